"""datasketch's MinHash LSH deduplicating a file of texts (one a line), as bench/score.bench.ts's peer.

    python datasketch_dedup.py TEXTS FLAGS_OUT THRESHOLD NUM_PERM

The same shingles as tuneloop's (src/dataset/near-dup.ts): NFKC, lower case, runs of letters and digits as words,
runs of three words. Used as datasketch's documentation has it, streaming: a text whose query finds a candidate is a
duplicate, any other is inserted. One MinHash's permutations are shared by all (making them per text would cost
more than the hashing). Writes one byte a row to FLAGS_OUT (1: duplicate) and prints one JSON line of figures.
"""

import json
import re
import resource
import sys
import time
import unicodedata

from datasketch import MinHash, MinHashLSH

WORD = re.compile(r"[^\W_]+")


def shingles(text: str) -> list[bytes]:
    words = WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if not words:
        return []
    if len(words) < 3:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)]


def main() -> None:
    texts, out, threshold, num_perm = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    template = MinHash(num_perm=num_perm, seed=1)
    flags = bytearray()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with open(texts, encoding="utf-8") as f:
        for i, line in enumerate(f):
            sh = shingles(line.rstrip("\n"))
            if not sh:
                flags.append(0)
                continue
            m = MinHash(num_perm=num_perm, seed=1, permutations=template.permutations, scheme=template.scheme)
            m.update_batch(sh)
            if lsh.query(m):
                flags.append(1)
            else:
                lsh.insert(i, m, check_duplication=False)
                flags.append(0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    with open(out, "wb") as f:
        f.write(flags)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": len(flags), "cpuS": cpu, "wallS": wall, "peakRssMb": peak_mb, "bands": lsh.b, "rowsPerBand": lsh.r}))


if __name__ == "__main__":
    main()
