/**
 * Which URLs identify a person. The contract: social profiles, link-in-bio pages, personal sites and shared
 * documents do; news, reference and health sites do not. Unknown sites count as personal only when the text says
 * so ("my blog", "my website") or the host is built from a name.
 */
import { isKnownFirstName } from './person';

export type UrlKind = 'person' | 'general' | 'none';

/** Profile paths: host (without www.) → path pattern that names an account. */
const PROFILE_PATHS: [RegExp, RegExp][] = [
  [/^(?:instagram\.com|instagr\.am)$/, /^\/(?!p\/|reel\/|explore\/|accounts\/)[\w.]{1,30}\/?/],
  [/^(?:facebook\.com|fb\.com|m\.facebook\.com)$/, /^\/(?!groups\/|events\/|pages\/|watch|share)[\w.?=-]{2,}/],
  [/^(?:twitter\.com|x\.com)$/, /^\/(?!i\/|search|hashtag\/|home)\w{1,15}/],
  [/^tiktok\.com$/, /^\/@[\w.]+/],
  [/^(?:[a-z]{2}\.)?linkedin\.com$/, /^\/(?:in|pub)\/[\w%-]+/],
  [/^github\.com$/, /^\/(?!features|about|pricing|topics|trending|marketplace)[\w-]{1,39}/],
  [/^strava\.com$/, /^\/(?:athletes|pros)\/\w+/],
  // youtube.com/@leo_builds is a person's channel; /c/KhanAcademy, /watch and /channel/ ids are not (contract).
  [/^(?:youtube\.com|m\.youtube\.com)$/, /^\/@[\w.-]+/],
  [/^scratch\.mit\.edu$/, /^\/users\/[\w-]+/],
  [/^duolingo\.com$/, /^\/profile\/\w+/],
  [/^chess\.com$/, /^\/member\/\w+/],
  [/^lichess\.org$/, /^\/@\/\w+/],
  [/^komoot\.com$/, /^\/user\/\w+/],
  [/^alltrails\.com$/, /^\/members\/[\w-]+/],
  [/^myfitnesspal\.com$/, /^\/profile\/\w+/],
  [/^last\.fm$/, /^\/user\/\w+/],
  [/^unsplash\.com$/, /^\/@[\w-]+/],
  [/^sites\.google\.com$/, /^\/(?:view|site)\/[\w-]+/],
  [/^psychologytoday\.com$/, /^\/\w+\/therapists\/[\w-]+/],
  [/^counselling-directory\.org\.uk$/, /^\/counsellors\/[\w-]+/],
  [/^connect\.garmin\.com$/, /^\/modern\/profile\/[\w-]+/],
  [/^(?:medium\.com|threads\.net|mastodon\.social|vimeo\.com)$/, /^\/@?[\w.-]+/],
  [/^(?:pinterest\.com|pinterest\.co\.uk)$/, /^\/(?!pin\/|search|ideas)[\w.-]+/],
  [/^reddit\.com$/, /^\/(?:u|user)\/[\w-]+/],
  [/^snapchat\.com$/, /^\/add\/[\w.-]+/],
  [/^bsky\.app$/, /^\/profile\/[\w.-]+/],
  [/^goodreads\.com$/, /^\/user\/show\/\w+/],
  [/^flickr\.com$/, /^\/(?:photos|people)\/[\w@-]+/],
  [/^open\.spotify\.com$/, /^\/user\/\w+/],
  [/^(?:docs|drive|photos|calendar)\.google\.com$/, /^\/./],
  [/^(?:dropbox\.com|onedrive\.live\.com|1drv\.ms|icloud\.com|wetransfer\.com|we\.tl)$/, /^\/./],
  [
    /^(?:linktr\.ee|beacons\.ai|about\.me|t\.me|wa\.me|paypal\.me|venmo\.com|cash\.app|ko-fi\.com|patreon\.com|buymeacoffee\.com|soundcloud\.com|twitch\.tv|calendly\.com|behance\.net|dribbble\.com|letterboxd\.com|onlyfans\.com|substack\.com|tumblr\.com|gofundme\.com|justgiving\.com|untappd\.com|myspace\.com|vsco\.co|bandcamp\.com|ravelry\.com|codepen\.io|gitlab\.com|kaggle\.com|orcid\.org|researchgate\.net|academia\.edu|cal\.com|zoom\.us|meet\.google\.com|teams\.microsoft\.com|runkeeper\.com|garmin\.com|connect\.garmin\.com|parkrun\.org\.uk|parkrun\.com|forms\.gle|tinyurl\.com|artstation\.com|deviantart\.com|500px\.com|acuityscheduling\.com|youcanbook\.me|setmore\.com|tidycal\.com|zcal\.co|crowdfunder\.co\.uk|givealittle\.co\.nz|fundly\.com|gogetfunding\.com|totalgiving\.co\.uk|virginmoneygiving\.com|bio\.link|lnk\.bio|linkin\.bio|solo\.to|taplink\.cc|hoo\.be|campsite\.bio|flowcode\.com|cameo\.com|vk\.com|xing\.com|wattpad\.com|ao3\.org|archiveofourown\.org|fanfiction\.net|quora\.com|pixiv\.net|newgrounds\.com|steamcommunity\.com|roblox\.com|etsy\.com|depop\.com|vinted\.co\.uk|ebay\.co\.uk|poshmark\.com)$/,
    /^\/./,
  ],
];

/** Hosts whose own subdomains are a person's page (sarah.substack.com). */
const PERSONAL_SUBDOMAIN_HOSTS =
  /\.(?:as\.me|youcanbook\.me|simplybook\.me|square\.site|setmore\.com|godaddysites\.com|jimdosite\.com|site123\.me|notion\.site|super\.site|substack\.com|wordpress\.com|blogspot\.com|github\.io|tumblr\.com|carrd\.co|wixsite\.com|squarespace\.com|weebly\.com|netlify\.app|vercel\.app|bandcamp\.com|itch\.io|gitlab\.io|neocities\.org|medium\.com|mystrikingly\.com|webflow\.io)$/;

const PERSONAL_CUE =
  /\b(?:my|our|his|her|their)\s+(?:own\s+)?(?:personal\s+)?(?:web\s?site|site|blog|page|portfolio|profile|channel|homepage|home page|link|cv|resume|newsletter|shop|store|podcast|doc|document|spreadsheet|sheet|folder|drive|journal|diary|album|photos|gallery|fundraiser|calendar)\b[^.!?\n]{0,40}$/;

/** Paths that name an account on any site: /@sam, /u/sam, /users/sam, /profile/sam, /members/sam, /in/sam. */
const PROFILE_PATH =
  /^\/(?:@[\w.-]{2,}|(?:u|user|users|profile|profiles|people|member|members|athlete|athletes|in|author|authors|creator|creators)\/[\w.%-]{2,})/i;

/** Hosts that are never personal even with a path. */
const GENERAL_HOSTS =
  /(?:^|\.)(?:bbc\.co\.uk|bbc\.com|nhs\.uk|gov\.uk|gov|wikipedia\.org|biblegateway\.com|bible\.com|youversion\.com|google\.com|amazon\.[a-z.]+|apple\.com|microsoft\.com|who\.int|cdc\.gov|nih\.gov|mayoclinic\.org|webmd\.com|mind\.org\.uk|samaritans\.org|nytimes\.com|theguardian\.com|reuters\.com|cnn\.com|khanacademy\.org|duolingo\.com|netflix\.com|spotify\.com|strava\.com|runnersworld\.com|openbible\.info|biblehub\.com|blueletterbible\.org|esv\.org|gotquestions\.org)$/;

export function classifyUrl(url: string, text: string, start: number): UrlKind {
  const m = /^(?:(https?):\/\/)?([^/?#:]+)(?::\d+)?([/?#].*)?$/i.exec(url);
  if (!m) return 'none';
  const scheme = m[1];
  const host = m[2]!.toLowerCase().replace(/^www\./, '');
  const path = m[3] ?? '';
  const tld = host.slice(host.lastIndexOf('.') + 1);
  // Bare "word.word" without a scheme, www. or path is usually a sentence missing its space ("ran.Then").
  if (!scheme && !url.toLowerCase().startsWith('www.') && !path && !KNOWN_TLDS.has(tld)) return 'none';
  for (const [h, p] of PROFILE_PATHS) if (h.test(host)) return p.test(path) ? 'person' : 'general';
  if (PERSONAL_SUBDOMAIN_HOSTS.test(host)) return 'person';
  if (GENERAL_HOSTS.test(host)) return 'general';
  // Any other site: a profile-shaped path, or a family site.
  if (PROFILE_PATH.test(path) || /famil(?:y|ie|le)/.test(host)) return 'person';
  const ctx = text.slice(Math.max(0, start - 60), start).toLowerCase();
  if (PERSONAL_CUE.test(ctx)) return 'person';
  if (looksLikeNameHost(host)) return 'person';
  return 'general';
}

const KNOWN_TLDS = new Set(
  'com net org io me ee co uk ie de fr nl es it eu us ca au nz info biz app dev blog page site online xyz tv ai ly gl gg sh be at ch dk se no fi pl pt cz in ms am art design studio photography coach fitness'.split(
    ' ',
  ),
);

/** sarahjones.com, jane-doe.me, dr-amy-chen.co.uk: a first name at the start of the host's main label. */
function looksLikeNameHost(host: string): boolean {
  const labels = host.split('.');
  let main = labels[0]!;
  if (labels.length > 2 && /^(?:co|com|org|net|ac)$/.test(labels[labels.length - 2]!))
    main = labels[labels.length - 3]!;
  else if (labels.length >= 2) main = labels[labels.length - 2]!;
  main = main.replace(/^(?:dr|the|coach|mr|mrs|ms|miss|iam|im|its|hey|hello|meet)-?/, '');
  for (const part of main.split('-')) if (part.length >= 3 && isKnownFirstName(part)) return true;
  for (let i = 3; i <= Math.min(main.length - 3, 12); i++) if (isKnownFirstName(main.slice(0, i))) return true;
  return false;
}
