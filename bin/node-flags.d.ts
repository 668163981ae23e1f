/** Node flags every tuneloop process runs with; see node-flags.js. */
export declare const NODE_FLAGS: string[];
