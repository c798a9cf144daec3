// Shared by the console's unit tests: typed replies (the gateway's typed JSON) in short.

export const status = (value) => ({ type: "status", value });
export const error = (value) => ({ type: "error", value });
export const int = (value) => ({ type: "integer", value: String(value) });
export const bulk = (value) => ({ type: "bulk", value });
export const binary = (bytes) => ({ type: "bulk", base64: Buffer.from(bytes).toString("base64") });
export const nil = { type: "null" };
export const nilArray = { type: "null-array" };
export const double = (value) => ({ type: "double", value });
export const bool = (value) => ({ type: "boolean", value });
export const verbatim = (value, format = "txt") => ({ type: "verbatim", value, format });
export const big = (value) => ({ type: "bignumber", value });
export const arr = (...value) => ({ type: "array", value });
export const set = (...value) => ({ type: "set", value });
export const push = (...value) => ({ type: "push", value });
export const map = (...pairs) => ({ type: "map", value: pairs });

/** Arguments as Buffers, which assert.deepStrictEqual compares byte by byte. */
export const buffers = (args) => (args === null ? null : args.map((a) => Buffer.from(a)));
export const B = (...parts) => parts.map((p) => Buffer.from(p));
