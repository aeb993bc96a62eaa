var __defProp = Object.defineProperty;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });

// worker.ts
import { DurableObject } from "cloudflare:workers";

// ../node_modules/@noble/hashes/_u64.js
var fromNumH = /* @__PURE__ */ __name((n) => n / 2 ** 32 | 0, "fromNumH");
var fromNumL = /* @__PURE__ */ __name((n) => n >>> 0, "fromNumL");

// ../node_modules/@noble/hashes/utils.js
function isBytes(a) {
  return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array" && "BYTES_PER_ELEMENT" in a && a.BYTES_PER_ELEMENT === 1;
}
__name(isBytes, "isBytes");
var atitle = /* @__PURE__ */ __name((title) => title ? `"${title}" ` : "", "atitle");
function anumber(n, title = "") {
  if (typeof n !== "number")
    throw new TypeError(atitle(title) + "expected number, got " + typeof n);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(atitle(title) + "expected integer >= 0, got " + n);
  return n;
}
__name(anumber, "anumber");
function abytes(value, length, title = "") {
  if (isBytes(value) && (length === void 0 || value.length === length))
    return value;
  if (length !== void 0)
    anumber(length, "length");
  const bytes = isBytes(value);
  const ofLen = length !== void 0 ? ` of length ${length}` : "";
  const got = bytes ? `length=${value.length}` : `type=${typeof value}`;
  const message = atitle(title) + "expected Uint8Array" + ofLen + ", got " + got;
  if (!bytes)
    throw new TypeError(message);
  throw new RangeError(message);
}
__name(abytes, "abytes");
function copyBytes(bytes) {
  return Uint8Array.from(abytes(bytes));
}
__name(copyBytes, "copyBytes");
var aobject = /* @__PURE__ */ __name((value, label) => {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TypeError((label === "object" ? "" : `"${label}" `) + "expected object, got type=" + typeof value);
}, "aobject");
var aopts = /* @__PURE__ */ __name((value, label) => {
  aobject(value, label);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null)
    throw new TypeError(`"${label}" expected plain object`);
  if (Object.hasOwn(value, "__proto__"))
    throw new TypeError(`"${label}.__proto__" is not allowed`);
}, "aopts");
function aexists(instance, checkFinished = true) {
  if (instance.destroyed)
    throw new Error("hash was destroyed");
  if (checkFinished && instance.finished)
    throw new Error("digest() was already called");
}
__name(aexists, "aexists");
function aoutput(out, instance) {
  abytes(out, void 0, "output");
  const min = instance.outputLen;
  if (!(out.length >= min)) {
    throw new RangeError('"output" expected length >= ' + min);
  }
}
__name(aoutput, "aoutput");
function u8(arr) {
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}
__name(u8, "u8");
function u32(arr) {
  return new Uint32Array(arr.buffer, arr.byteOffset, Math.floor(arr.byteLength / 4));
}
__name(u32, "u32");
function clean(...arrays) {
  for (let i = 0; i < arrays.length; i++) {
    arrays[i].fill(0);
  }
}
__name(clean, "clean");
function rotr(word, shift) {
  return word << 32 - shift | word >>> shift;
}
__name(rotr, "rotr");
var isLE = /* @__PURE__ */ (() => new Uint8Array(new Uint32Array([287454020]).buffer)[0] === 68)();
function byteSwap(word) {
  return word << 24 & 4278190080 | word << 8 & 16711680 | word >>> 8 & 65280 | word >>> 24 & 255;
}
__name(byteSwap, "byteSwap");
var swap8IfBE = isLE ? (n) => n : (n) => byteSwap(n) >>> 0;
function byteSwap32(arr) {
  for (let i = 0; i < arr.length; i++) {
    arr[i] = byteSwap(arr[i]);
  }
  return arr;
}
__name(byteSwap32, "byteSwap32");
var swap32IfBE = isLE ? (u) => u : byteSwap32;
function checkOpts(defaults, opts, title = "opts") {
  aopts(defaults, "defaults");
  if (opts !== void 0)
    aopts(opts, title);
  const merged = Object.assign(/* @__PURE__ */ Object.create(null), defaults, opts);
  return merged;
}
__name(checkOpts, "checkOpts");
function createHasher(hashCons, info = {}) {
  if (typeof hashCons !== "function")
    throw new TypeError('"hashCons" expected function, got type=' + typeof hashCons);
  info = checkOpts({}, info, "info");
  const hashC = /* @__PURE__ */ __name((msg, opts) => hashCons(opts).update(msg).digest(), "hashC");
  const tmp = hashCons(void 0);
  hashC.outputLen = tmp.outputLen;
  hashC.blockLen = tmp.blockLen;
  hashC.canXOF = tmp.canXOF;
  hashC.create = (opts) => hashCons(opts);
  Object.assign(hashC, info);
  return Object.freeze(hashC);
}
__name(createHasher, "createHasher");

// ../node_modules/@noble/hashes/_md.js
var SHA256_IV = /* @__PURE__ */ Uint32Array.from([
  1779033703,
  3144134277,
  1013904242,
  2773480762,
  1359893119,
  2600822924,
  528734635,
  1541459225
]);

// ../node_modules/@noble/hashes/_blake.js
function G1s(a, b, c, d, x) {
  a = a + b + x | 0;
  d = rotr(d ^ a, 16);
  c = c + d | 0;
  b = rotr(b ^ c, 12);
  return { a, b, c, d };
}
__name(G1s, "G1s");
function G2s(a, b, c, d, x) {
  a = a + b + x | 0;
  d = rotr(d ^ a, 8);
  c = c + d | 0;
  b = rotr(b ^ c, 7);
  return { a, b, c, d };
}
__name(G2s, "G2s");

// ../node_modules/@noble/hashes/blake2.js
var _BLAKE2 = class {
  static {
    __name(this, "_BLAKE2");
  }
  buffer;
  buffer32;
  finished = false;
  destroyed = false;
  length = 0;
  pos = 0;
  blockLen;
  outputLen;
  canXOF = false;
  constructor(blockLen, outputLen) {
    anumber(blockLen);
    anumber(outputLen);
    this.blockLen = blockLen;
    this.outputLen = outputLen;
    this.buffer = new Uint8Array(blockLen);
    this.buffer32 = u32(this.buffer);
  }
  update(data) {
    aexists(this);
    abytes(data);
    const { blockLen, buffer, buffer32 } = this;
    const len = data.length;
    const offset = data.byteOffset;
    const buf = data.buffer;
    for (let pos = 0; pos < len; ) {
      if (this.pos === blockLen) {
        swap32IfBE(buffer32);
        this.compress(buffer32, 0, false);
        swap32IfBE(buffer32);
        this.pos = 0;
      }
      const take = Math.min(blockLen - this.pos, len - pos);
      const dataOffset = offset + pos;
      if (take === blockLen && !(dataOffset % 4) && pos + take < len) {
        const data32 = new Uint32Array(buf, dataOffset, Math.floor((len - pos) / 4));
        swap32IfBE(data32);
        for (let pos32 = 0; pos + blockLen < len; pos32 += buffer32.length, pos += blockLen) {
          this.length += blockLen;
          this.compress(data32, pos32, false);
        }
        swap32IfBE(data32);
        continue;
      }
      buffer.set(pos === 0 && take === len ? data : data.subarray(pos, pos + take), this.pos);
      this.pos += take;
      this.length += take;
      pos += take;
    }
    return this;
  }
  digestInto(out) {
    aexists(this);
    aoutput(out, this);
    if (out.byteOffset & 3)
      throw new RangeError('"output" expected 4-byte aligned byteOffset, got ' + out.byteOffset);
    const { pos, buffer32 } = this;
    this.finished = true;
    this.buffer.fill(0, pos);
    swap32IfBE(buffer32);
    this.compress(buffer32, 0, true);
    swap32IfBE(buffer32);
    const state = this.get();
    const out32 = out === this.buffer ? buffer32 : u32(out);
    const full = Math.floor(this.outputLen / 4);
    for (let i = 0; i < full; i++)
      out32[i] = swap8IfBE(state[i]);
    const tail = this.outputLen % 4;
    if (!tail)
      return;
    const off = full * 4;
    const word = state[full];
    for (let i = 0; i < tail; i++)
      out[off + i] = word >>> 8 * i;
  }
  digest() {
    const { buffer, outputLen } = this;
    this.digestInto(buffer);
    const res = buffer.slice(0, outputLen);
    this.destroy();
    return res;
  }
  _cloneInto(to) {
    const { buffer, length, finished, destroyed, outputLen, pos } = this;
    to ||= new this.constructor({ dkLen: outputLen });
    to.set(...this.get());
    to.buffer.set(buffer);
    to.destroyed = destroyed;
    to.finished = finished;
    to.length = length;
    to.pos = pos;
    to.outputLen = outputLen;
    return to;
  }
  clone() {
    return this._cloneInto();
  }
};
function _compress(s, offset, msg, rounds, v0, v1, v2, v3, v42, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15) {
  let j = 0;
  for (let i = 0; i < rounds; i++) {
    ({ a: v0, b: v42, c: v8, d: v12 } = G1s(v0, v42, v8, v12, msg[offset + s[j++]]));
    ({ a: v0, b: v42, c: v8, d: v12 } = G2s(v0, v42, v8, v12, msg[offset + s[j++]]));
    ({ a: v1, b: v5, c: v9, d: v13 } = G1s(v1, v5, v9, v13, msg[offset + s[j++]]));
    ({ a: v1, b: v5, c: v9, d: v13 } = G2s(v1, v5, v9, v13, msg[offset + s[j++]]));
    ({ a: v2, b: v6, c: v10, d: v14 } = G1s(v2, v6, v10, v14, msg[offset + s[j++]]));
    ({ a: v2, b: v6, c: v10, d: v14 } = G2s(v2, v6, v10, v14, msg[offset + s[j++]]));
    ({ a: v3, b: v7, c: v11, d: v15 } = G1s(v3, v7, v11, v15, msg[offset + s[j++]]));
    ({ a: v3, b: v7, c: v11, d: v15 } = G2s(v3, v7, v11, v15, msg[offset + s[j++]]));
    ({ a: v0, b: v5, c: v10, d: v15 } = G1s(v0, v5, v10, v15, msg[offset + s[j++]]));
    ({ a: v0, b: v5, c: v10, d: v15 } = G2s(v0, v5, v10, v15, msg[offset + s[j++]]));
    ({ a: v1, b: v6, c: v11, d: v12 } = G1s(v1, v6, v11, v12, msg[offset + s[j++]]));
    ({ a: v1, b: v6, c: v11, d: v12 } = G2s(v1, v6, v11, v12, msg[offset + s[j++]]));
    ({ a: v2, b: v7, c: v8, d: v13 } = G1s(v2, v7, v8, v13, msg[offset + s[j++]]));
    ({ a: v2, b: v7, c: v8, d: v13 } = G2s(v2, v7, v8, v13, msg[offset + s[j++]]));
    ({ a: v3, b: v42, c: v9, d: v14 } = G1s(v3, v42, v9, v14, msg[offset + s[j++]]));
    ({ a: v3, b: v42, c: v9, d: v14 } = G2s(v3, v42, v9, v14, msg[offset + s[j++]]));
  }
  return { v0, v1, v2, v3, v4: v42, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 };
}
__name(_compress, "_compress");

// ../node_modules/@noble/hashes/blake3.js
var B3_Flags = {
  CHUNK_START: 1,
  CHUNK_END: 2,
  PARENT: 4,
  ROOT: 8,
  KEYED_HASH: 16,
  DERIVE_KEY_CONTEXT: 32,
  DERIVE_KEY_MATERIAL: 64
};
var B3_IV = /* @__PURE__ */ SHA256_IV.slice();
var B3_SIGMA = /* @__PURE__ */ (() => {
  const Id = Array.from({ length: 16 }, (_, i) => i);
  const permute = /* @__PURE__ */ __name((arr) => [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8].map((i) => arr[i]), "permute");
  const res = [];
  for (let i = 0, v = Id; i < 7; i++, v = permute(v))
    res.push(...v);
  return Uint8Array.from(res);
})();
var _BLAKE3 = class __BLAKE3 extends _BLAKE2 {
  static {
    __name(this, "_BLAKE3");
  }
  canXOF = true;
  chunkPos = 0;
  // Position of current block in chunk
  // How many chunks we already have; exact while this stays within
  // JS's safe-integer range.
  chunksDone = 0;
  flags = 0 | 0;
  IV;
  state;
  stack = [];
  // Output
  posOut = 0;
  bufferOut32 = new Uint32Array(16);
  bufferOut;
  // Index of output chunk; exact while this stays within JS's
  // safe-integer range.
  chunkOut = 0;
  enableXOF = true;
  constructor(opts = {}, flags = 0) {
    opts = checkOpts({}, opts);
    super(64, opts.dkLen === void 0 ? 32 : opts.dkLen);
    const { key, context } = opts;
    const hasContext = context !== void 0;
    if (key !== void 0) {
      if (hasContext)
        throw new Error('cannot use both "key" and "context"');
      abytes(key, 32, "key");
      const k = copyBytes(key);
      this.IV = u32(k);
      swap32IfBE(this.IV);
      this.flags = flags | B3_Flags.KEYED_HASH;
    } else if (hasContext) {
      abytes(context, void 0, "context");
      const ctx = context;
      const contextKey = new __BLAKE3({ dkLen: 32 }, B3_Flags.DERIVE_KEY_CONTEXT).update(ctx).digest();
      this.IV = u32(contextKey);
      swap32IfBE(this.IV);
      this.flags = flags | B3_Flags.DERIVE_KEY_MATERIAL;
    } else {
      this.IV = B3_IV;
      this.flags = flags;
    }
    this.state = this.IV.slice();
    this.bufferOut = u8(this.bufferOut32);
  }
  // _BLAKE2's scalar-state hooks are unused here: BLAKE3 keeps its tree/XOF state in arrays and
  // copies it directly in _cloneInto().
  get() {
    return [];
  }
  set() {
  }
  // Truncated chunk/parent compression: seed v8..v15 as IV[0..3], t0, t1,
  // block length, and flags, then keep only the first 8 output words.
  b2Compress(counter, flags, buf, bufPos = 0) {
    const { state: s, pos } = this;
    const t0 = fromNumL(counter);
    const t1 = fromNumH(counter);
    const { v0, v1, v2, v3, v4: v42, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 } = _compress(B3_SIGMA, bufPos, buf, 7, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], B3_IV[0], B3_IV[1], B3_IV[2], B3_IV[3], t0, t1, pos, flags);
    s[0] = v0 ^ v8;
    s[1] = v1 ^ v9;
    s[2] = v2 ^ v10;
    s[3] = v3 ^ v11;
    s[4] = v42 ^ v12;
    s[5] = v5 ^ v13;
    s[6] = v6 ^ v14;
    s[7] = v7 ^ v15;
  }
  compress(buf, bufPos = 0, isLast = false) {
    let flags = this.flags;
    if (!this.chunkPos)
      flags |= B3_Flags.CHUNK_START;
    if (this.chunkPos === 15 || isLast)
      flags |= B3_Flags.CHUNK_END;
    if (!isLast)
      this.pos = this.blockLen;
    this.b2Compress(this.chunksDone, flags, buf, bufPos);
    this.chunkPos += 1;
    if (this.chunkPos === 16 || isLast) {
      let chunk = this.state;
      this.state = this.IV.slice();
      for (let last, chunks = this.chunksDone + 1; isLast || !(chunks & 1); chunks = Math.floor(chunks / 2)) {
        if (!(last = this.stack.pop()))
          break;
        this.buffer32.set(last, 0);
        this.buffer32.set(chunk, 8);
        this.pos = this.blockLen;
        this.b2Compress(0, this.flags | B3_Flags.PARENT, this.buffer32, 0);
        chunk = this.state;
        this.state = this.IV.slice();
      }
      this.chunksDone++;
      this.chunkPos = 0;
      this.stack.push(chunk);
    }
    this.pos = 0;
  }
  // Overriding hides _BLAKE2's flat implementation, which would otherwise be inherited
  // and silently miss the tree state (CV stack, chunk counters; get()/set() are stubs here).
  _cloneInto(to) {
    const staleOutput = !!to && to.finished && !to.destroyed;
    to = super._cloneInto(to);
    const { IV, flags, state, chunkPos, posOut, chunkOut, stack, chunksDone } = this;
    to.state.set(state);
    to.stack = stack.map((i) => Uint32Array.from(i));
    if (IV === B3_IV) {
      if (to.IV !== B3_IV)
        clean(to.IV);
      to.IV = B3_IV;
    } else if (to.IV === B3_IV) {
      to.IV = IV.slice();
    } else {
      to.IV.set(IV);
    }
    to.flags = flags;
    to.chunkPos = chunkPos;
    to.chunksDone = chunksDone;
    to.posOut = posOut;
    to.chunkOut = chunkOut;
    to.enableXOF = this.enableXOF;
    if (this.finished) {
      to.bufferOut32.set(this.bufferOut32);
    } else if (staleOutput) {
      clean(to.bufferOut32);
    }
    return to;
  }
  destroy() {
    this.destroyed = true;
    clean(this.state, this.buffer32, this.bufferOut32);
    if (this.IV !== B3_IV)
      clean(this.IV);
    clean(...this.stack);
  }
  // Root/XOF compression: rerun the same ROOT inputs with incrementing output
  // counter `t` and materialize all 16 output words.
  // Same as b2Compress, but doesn't modify state and returns 16 u32 array (instead of 8)
  b2CompressOut() {
    const { state: s, pos, flags, buffer32, bufferOut32: out32 } = this;
    const outCounter = this.chunkOut++;
    const t0 = fromNumL(outCounter);
    const t1 = fromNumH(outCounter);
    swap32IfBE(buffer32);
    const { v0, v1, v2, v3, v4: v42, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 } = _compress(B3_SIGMA, 0, buffer32, 7, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], B3_IV[0], B3_IV[1], B3_IV[2], B3_IV[3], t0, t1, pos, flags);
    out32[0] = v0 ^ v8;
    out32[1] = v1 ^ v9;
    out32[2] = v2 ^ v10;
    out32[3] = v3 ^ v11;
    out32[4] = v42 ^ v12;
    out32[5] = v5 ^ v13;
    out32[6] = v6 ^ v14;
    out32[7] = v7 ^ v15;
    out32[8] = s[0] ^ v8;
    out32[9] = s[1] ^ v9;
    out32[10] = s[2] ^ v10;
    out32[11] = s[3] ^ v11;
    out32[12] = s[4] ^ v12;
    out32[13] = s[5] ^ v13;
    out32[14] = s[6] ^ v14;
    out32[15] = s[7] ^ v15;
    swap32IfBE(buffer32);
    swap32IfBE(out32);
    this.posOut = 0;
  }
  finish() {
    if (this.finished)
      return;
    this.finished = true;
    this.buffer.fill(0, this.pos);
    let flags = this.flags | B3_Flags.ROOT;
    if (this.stack.length) {
      flags |= B3_Flags.PARENT;
      swap32IfBE(this.buffer32);
      this.compress(this.buffer32, 0, true);
      swap32IfBE(this.buffer32);
      this.chunksDone = 0;
      this.pos = this.blockLen;
    } else {
      flags |= (!this.chunkPos ? B3_Flags.CHUNK_START : 0) | B3_Flags.CHUNK_END;
    }
    this.flags = flags;
    this.b2CompressOut();
  }
  writeInto(out) {
    aexists(this, false);
    abytes(out);
    this.finish();
    const { blockLen, bufferOut } = this;
    for (let pos = 0, len = out.length; pos < len; ) {
      if (this.posOut >= blockLen)
        this.b2CompressOut();
      const take = Math.min(blockLen - this.posOut, len - pos);
      out.set(bufferOut.subarray(this.posOut, this.posOut + take), pos);
      this.posOut += take;
      pos += take;
    }
    return out;
  }
  xofInto(out) {
    if (!this.enableXOF)
      throw new Error("no XOF after digest()");
    return this.writeInto(out);
  }
  xof(bytes) {
    anumber(bytes);
    return this.xofInto(new Uint8Array(bytes));
  }
  digestInto(out) {
    aoutput(out, this);
    if (this.finished)
      throw new Error("digest() was already called");
    this.enableXOF = false;
    this.writeInto(out.length === this.outputLen ? out : out.subarray(0, this.outputLen));
    this.destroy();
  }
  digest() {
    const out = new Uint8Array(this.outputLen);
    this.digestInto(out);
    return out;
  }
};
var blake3 = /* @__PURE__ */ createHasher((opts = {}) => new _BLAKE3(opts));

// ../src/http.ts
var ApiError = class _ApiError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
  static {
    __name(this, "ApiError");
  }
  static badRequest(m) {
    return new _ApiError(400, "bad_request", m);
  }
  static unauthorized(m) {
    return new _ApiError(401, "unauthorized", m);
  }
  static forbidden(m) {
    return new _ApiError(403, "forbidden", m);
  }
  static notFound(m) {
    return new _ApiError(404, "not_found", m);
  }
  static internal(m) {
    return new _ApiError(500, "internal", m);
  }
  static upstream(m) {
    return new _ApiError(502, "upstream_failed", m);
  }
  static noCoordinator(m) {
    return new _ApiError(503, "no_coordinator", m);
  }
  static noWorker(m) {
    return new _ApiError(503, "no_worker", m);
  }
  static timeout(m) {
    return new _ApiError(504, "timeout", m);
  }
  response() {
    const body = { error: this.code, message: this.message };
    return json(body, this.status, this.headers);
  }
};
function json(value, status = 200, headers = {}) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", ...headers }
  });
}
__name(json, "json");
var MAX_ID_LEN = 128;
function idProblem(id) {
  if (typeof id !== "string" || id.length === 0) return "id is empty";
  if (id.length > MAX_ID_LEN) return `id is longer than ${MAX_ID_LEN} characters`;
  if (!/^[A-Za-z0-9._-]+$/.test(id)) return `id ${JSON.stringify(id)} holds a character outside [A-Za-z0-9._-]`;
  return null;
}
__name(idProblem, "idProblem");
function checkId(what, id) {
  const p = idProblem(id);
  if (p) throw ApiError.badRequest(`${what}: ${p}`);
  return id;
}
__name(checkId, "checkId");
async function readJson(req, limit = 1 << 20) {
  const ct = req.headers.get("content-type") ?? "";
  if (ct && !ct.toLowerCase().startsWith("application/json")) {
    throw new ApiError(415, "unsupported_media_type", "Expected request with `Content-Type: application/json`");
  }
  const text = await req.text();
  if (text.length > limit) throw new ApiError(413, "payload_too_large", `the JSON body is over ${limit} bytes`);
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw ApiError.badRequest(`Failed to parse the request body as JSON: ${e.message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw ApiError.badRequest("Failed to deserialize the JSON body: expected an object");
  }
  return v;
}
__name(readJson, "readJson");
function rfc3339(ms) {
  return new Date(ms).toISOString();
}
__name(rfc3339, "rfc3339");
function bearer(req) {
  const h = req.headers.get("authorization");
  if (!h) return null;
  const m = /^\s*bearer\s+(.+?)\s*$/i.exec(h);
  return m ? m[1] : null;
}
__name(bearer, "bearer");
function sameSecret(a, b) {
  if (a.length !== b.length || a.length === 0) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}
__name(sameSecret, "sameSecret");

// ../src/auth.ts
var ROLES = ["coordinator", "worker", "client"];
var ISSUER = "rma";
var CREDENTIAL_TTL_S = 24 * 3600;
var LEEWAY_S = 60;
var RENEW_SKEW_S = 300;
var enc = new TextEncoder();
var dec = new TextDecoder();
function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
__name(b64url, "b64url");
function unb64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const pad = text.length % 4 === 0 ? "" : "=".repeat(4 - text.length % 4);
  try {
    const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + pad);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}
__name(unb64url, "unb64url");
function hexBytes(hex2) {
  const h = hex2.trim();
  if (!/^[0-9a-fA-F]*$/.test(h) || h.length % 2) return null;
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
__name(hexBytes, "hexBytes");
function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
__name(hex, "hex");
async function publicKey(text) {
  const raw = unb64url(text.trim());
  if (!raw || raw.length !== 32) throw ApiError.badRequest("public_key: not base64url of a 32-byte Ed25519 key");
  try {
    return await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  } catch {
    throw ApiError.badRequest("public_key: not a valid Ed25519 public key");
  }
}
__name(publicKey, "publicKey");
async function verifySig(key, message, signature) {
  const sig = unb64url(signature.trim());
  if (!sig || sig.length !== 64) return false;
  return crypto.subtle.verify({ name: "Ed25519" }, key, sig, enc.encode(message));
}
__name(verifySig, "verifySig");
var Federation = class _Federation {
  constructor(signing, verifying, publicText) {
    this.signing = signing;
    this.verifying = verifying;
    this.publicText = publicText;
  }
  static {
    __name(this, "Federation");
  }
  /** From the hex seed of `federation.key` (the `FEDERATION_KEY` secret). */
  static async fromSeedHex(seedHex) {
    const seed = hexBytes(seedHex);
    if (!seed || seed.length !== 32) {
      throw new Error("FEDERATION_KEY must be 64 hex digits (the contents of a federation.key file)");
    }
    const pkcs8 = new Uint8Array([...hexBytes("302e020100300506032b657004220420"), ...seed]);
    const signing = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", signing);
    const x = jwk.x ?? "";
    const verifying = await crypto.subtle.importKey("raw", unb64url(x), { name: "Ed25519" }, false, ["verify"]);
    return new _Federation(signing, verifying, x);
  }
  /** A signed credential for `claims`. */
  async sign(claims) {
    const head = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "EdDSA" })));
    const body = b64url(enc.encode(JSON.stringify(claims)));
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, this.signing, enc.encode(`${head}.${body}`));
    return `${head}.${body}.${b64url(new Uint8Array(sig))}`;
  }
  /** The claims of a credential this federation signed and that has not expired; 401 else. */
  async verify(token, nowS) {
    const parts = token.trim().split(".");
    const bad = /* @__PURE__ */ __name((why) => ApiError.unauthorized(`the credential is not valid: ${why}`), "bad");
    if (parts.length !== 3) throw bad("not a JWT");
    const [h, b, s] = parts;
    const header = parseJson(unb64url(h));
    if (!header || header.alg !== "EdDSA") throw bad("not an EdDSA token");
    const sig = unb64url(s);
    if (!sig || sig.length !== 64) throw bad("bad signature");
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, this.verifying, sig, enc.encode(`${h}.${b}`));
    if (!ok) throw ApiError.unauthorized("the credential is not signed by this federation");
    const c = parseJson(unb64url(b));
    if (!c || typeof c.sub !== "string" || typeof c.exp !== "number") throw bad("missing claims");
    if (c.iss !== ISSUER) throw bad("wrong issuer");
    if (c.exp + LEEWAY_S < nowS) {
      throw ApiError.unauthorized(
        "the credential has expired; the node renews it at the router by itself, or enrols again with a new join token"
      );
    }
    if (!ROLES.includes(c.role)) throw bad("unknown role");
    return c;
  }
  /** A fresh credential for a node. */
  async issue(nodeId, role, services, owner, key, nowS) {
    const claims = {
      iss: ISSUER,
      sub: nodeId,
      role,
      ...services ? { services } : {},
      ...owner ? { owner } : {},
      cnf: key,
      iat: nowS,
      exp: nowS + CREDENTIAL_TTL_S,
      jti: hex(crypto.getRandomValues(new Uint8Array(16)))
    };
    return { token: await this.sign(claims), claims };
  }
};
function parseJson(bytes) {
  if (!bytes) return null;
  try {
    const v = JSON.parse(dec.decode(bytes));
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}
__name(parseJson, "parseJson");
function allows(c, service) {
  return !c.services || c.services.includes(service);
}
__name(allows, "allows");
function sameNode(c, what, id) {
  if (c.sub !== id) {
    throw ApiError.forbidden(`the credential is ${c.sub}'s; it cannot act for ${what} ${JSON.stringify(id)}`);
  }
}
__name(sameNode, "sameNode");
function parseJoinToken(text) {
  const bad = /* @__PURE__ */ __name((why) => ApiError.unauthorized(`not a join token (${why}); make one with \`rma invite --router URL --role \u2026\``), "bad");
  const t = text.trim();
  if (!t.startsWith("rmaj1_")) throw bad("it does not start with rmaj1_");
  const raw = unb64url(t.slice(6));
  if (!raw) throw bad("bad base64");
  const v = parseJson(raw);
  if (!v || typeof v.r !== "string" || typeof v.s !== "string") throw bad("bad contents");
  if (!/^[0-9a-fA-F]{64}$/.test(v.s)) throw bad("bad secret");
  return { router: v.r, secret: v.s };
}
__name(parseJoinToken, "parseJoinToken");
function newJoinToken(router) {
  const secret = hex(crypto.getRandomValues(new Uint8Array(32)));
  const token = "rmaj1_" + b64url(enc.encode(JSON.stringify({ r: router.replace(/\/+$/, ""), s: secret })));
  return { token, secret };
}
__name(newJoinToken, "newJoinToken");
function secretHash(secret) {
  return hex(blake3(enc.encode(secret)));
}
__name(secretHash, "secretHash");
function keySuffix(key) {
  return secretHash(key).slice(0, 8);
}
__name(keySuffix, "keySuffix");
function renewMessage(nodeId, unixS) {
  return `rma-renew-v1
${nodeId}
${unixS}`;
}
__name(renewMessage, "renewMessage");

// ../src/urls.ts
function v4(host) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  return o.every((x) => x <= 255) ? o : null;
}
__name(v4, "v4");
function checkRegistered(policy, what, raw) {
  const fail = /* @__PURE__ */ __name((detail) => ApiError.badRequest(`${what} ${JSON.stringify(raw)} ${detail}`), "fail");
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw fail("is not an absolute http(s) URL with a host");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:" || !url.hostname) {
    throw fail("is not an absolute http(s) URL with a host");
  }
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const o = v4(host);
  const loopback = host === "localhost" || host === "::1" || o !== null && o[0] === 127;
  if (o) {
    const [a, b] = o;
    if (a === 169 && b === 254) throw fail(`is refused: ${host} is link-local (the metadata service among them)`);
    if (a === 0 || a >= 224) throw fail(`is refused: ${host} is unspecified, multicast or reserved`);
    const priv = a === 10 || a === 172 && b >= 16 && b < 32 || a === 192 && b === 168 || a === 100 && b >= 64 && b < 128;
    if (priv && !policy.allowPrivate) throw fail(`is refused: ${host} is a private address (ALLOW_PRIVATE_ADDRESSES)`);
  } else if (host.includes(":")) {
    if (host.startsWith("fe8") || host.startsWith("fe9") || host.startsWith("fea") || host.startsWith("feb")) {
      throw fail(`is refused: ${host} is link-local`);
    }
    if (host === "::" || host.startsWith("ff")) throw fail(`is refused: ${host} is unspecified or multicast`);
    if ((host.startsWith("fc") || host.startsWith("fd")) && !policy.allowPrivate) {
      throw fail(`is refused: ${host} is a private address (ALLOW_PRIVATE_ADDRESSES)`);
    }
  }
  if (loopback && !(policy.allowLoopback || policy.allowPrivate)) throw fail(`is refused: ${host} is loopback`);
  if (url.protocol === "http:" && !(policy.allowHttp || loopback)) {
    throw fail("is refused: plain http to a non-loopback address (ALLOW_HTTP)");
  }
  return raw.replace(/\/+$/, "");
}
__name(checkRegistered, "checkRegistered");

// ../src/usage.ts
var DAY_S = 86400;
var MIN_RATE_WINDOW_S = 600;
var WARN_AT = 0.8;
var FREE_TIER = [
  ["requests", 1e5],
  ["registry_requests", 1e5],
  ["rows_written", 1e5]
];
function project(used, countedS, leftS) {
  const rate = used / Math.max(countedS, MIN_RATE_WINDOW_S);
  return used + Math.round(rate * leftS);
}
__name(project, "project");
var Meter = class {
  static {
    __name(this, "Meter");
  }
  state;
  warned = /* @__PURE__ */ new Set();
  constructor(nowMs, saved) {
    const s = Math.floor(nowMs / 1e3);
    const day = Math.floor(s / DAY_S);
    this.state = saved && saved.day === day ? saved : { day, startedS: s, counts: { requests: 0, registry_requests: 0, rows_written: 0 } };
  }
  roll(nowS) {
    const today = Math.floor(nowS / DAY_S);
    if (today !== this.state.day) {
      this.state = { day: today, startedS: today * DAY_S, counts: { requests: 0, registry_requests: 0, rows_written: 0 } };
      this.warned.clear();
    }
  }
  count(kind, n, nowMs) {
    this.roll(Math.floor(nowMs / 1e3));
    this.state.counts[kind] += n;
  }
  report(nowMs) {
    const nowS = Math.floor(nowMs / 1e3);
    this.roll(nowS);
    const dayStart = this.state.day * DAY_S;
    const countedS = nowS - Math.max(this.state.startedS, dayStart);
    const leftS = dayStart + DAY_S - nowS;
    const warnings = [];
    const counters = FREE_TIER.map(([name, limit]) => {
      const used = Math.round(this.state.counts[name]);
      const projected = project(used, countedS, leftS);
      const share = projected / limit;
      if (share >= WARN_AT) {
        const words = `${name}: ${projected} projected today, ${Math.round(share * 100)} % of the free tier's ${limit}`;
        if (!this.warned.has(name)) {
          this.warned.add(name);
          console.warn(`usage is past 80 % of the edge's free tier: ${words}`);
        }
        warnings.push(words);
      }
      return {
        name,
        used,
        projected,
        free_tier_limit: limit,
        headroom_percent: Math.round((1 - share) * 1e3) / 10
      };
    });
    return {
      day: new Date(dayStart * 1e3).toISOString().slice(0, 10),
      counted_s: countedS,
      counters,
      warning: warnings.length ? warnings.join("; ") : null
    };
  }
};

// ../src/registry.ts
var MINUTE = 6e4;
var SAVE_METER_EVERY_MS = 10 * MINUTE;
function shapeOf(services) {
  return JSON.stringify(Object.keys(services).filter((k) => services[k] > 0).sort());
}
__name(shapeOf, "shapeOf");
var Registry = class {
  constructor(deps, config, alarmAt = null) {
    this.deps = deps;
    this.config = config;
    const sql = deps.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS coordinators (
      id TEXT PRIMARY KEY, url TEXT NOT NULL, location TEXT,
      registered_at_ms INTEGER NOT NULL, inventory TEXT)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS nodes (
      node_id TEXT PRIMARY KEY, role TEXT NOT NULL, services TEXT, owner TEXT,
      public_key TEXT NOT NULL, enrolled_at_ms INTEGER NOT NULL, revoked_at_ms INTEGER)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS invites (
      hash TEXT PRIMARY KEY, role TEXT NOT NULL, services TEXT, owner TEXT,
      uses_left INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`);
    const now = deps.now();
    for (const r of sql.exec("SELECT * FROM coordinators").toArray()) {
      let inv = {};
      try {
        inv = JSON.parse(String(r.inventory ?? "{}"));
      } catch {
        inv = {};
      }
      const services = inv.services ?? {};
      const workers = [];
      this.entries.set(String(r.id), {
        id: String(r.id),
        url: String(r.url),
        location: r.location ?? null,
        registeredAt: Number(r.registered_at_ms),
        lastSeen: now,
        services,
        workers,
        load: 0,
        activeRequests: 0,
        unreachable: false,
        shape: shapeOf(services),
        served: [],
        failures: []
      });
    }
    for (const r of sql.exec("SELECT node_id, revoked_at_ms FROM nodes WHERE revoked_at_ms IS NOT NULL").toArray()) {
      this.revoked.set(String(r.node_id), Number(r.revoked_at_ms));
    }
    let saved = null;
    const m = sql.exec("SELECT v FROM meta WHERE k = 'meter'").toArray()[0];
    if (m) {
      try {
        saved = JSON.parse(String(m.v));
      } catch {
        saved = null;
      }
    }
    this.meter = new Meter(now, saved);
    this.meterSavedAt = now;
    this.alarmAt = alarmAt;
    this.scheduleAlarm();
  }
  static {
    __name(this, "Registry");
  }
  entries = /* @__PURE__ */ new Map();
  /** Worker → coordinator that took its registration through this router. */
  homes = /* @__PURE__ */ new Map();
  revoked = /* @__PURE__ */ new Map();
  meter;
  meterSavedAt;
  alarmAt = null;
  turn = 0;
  // ---- bookkeeping ---------------------------------------------------------------------------
  write(query, ...bindings) {
    const c = this.deps.sql.exec(query, ...bindings);
    c.toArray();
    const n = c.rowsWritten;
    if (n > 0) this.meter.count("rows_written", n, this.deps.now());
    return n;
  }
  /** Counts a Durable Object request (`n` = 1/20 for a WebSocket message). */
  countRequest(n = 1) {
    this.meter.count("registry_requests", n, this.deps.now());
    this.maybeSaveMeter();
  }
  /** Counts Worker requests reported by the Worker. */
  countWorkerRequests(n) {
    if (n > 0 && Number.isFinite(n)) this.meter.count("requests", Math.min(n, 1e7), this.deps.now());
  }
  maybeSaveMeter(force = false) {
    const now = this.deps.now();
    if (!force && now - this.meterSavedAt < SAVE_METER_EVERY_MS) return;
    this.meterSavedAt = now;
    this.meter.count("rows_written", 1, now);
    this.deps.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meter', ?)", JSON.stringify(this.meter.state)).toArray();
  }
  usage() {
    return this.meter.report(this.deps.now());
  }
  /** The interval told to coordinators: the base one, longer when many share the budget. */
  heartbeatIntervalMs() {
    const n = Math.max(1, this.entries.size);
    const budgeted = Math.ceil(n * 864e5 / this.config.heartbeatBudget);
    return Math.max(this.config.heartbeatIntervalMs, budgeted);
  }
  /** How long without a heartbeat before a coordinator is stale: never under 2.5 intervals. */
  staleAfterMs() {
    return Math.max(this.config.staleAfterMs, 2.5 * this.heartbeatIntervalMs());
  }
  expireAfterMs() {
    return Math.max(this.config.expireAfterMs, 2 * this.staleAfterMs());
  }
  status(e, now) {
    if (now - e.lastSeen >= this.staleAfterMs()) return "stale";
    return e.unreachable ? "unreachable" : "healthy";
  }
  freshCount(now) {
    let n = 0;
    for (const e of this.entries.values()) if (this.status(e, now) !== "stale") n++;
    return n;
  }
  /** One alarm at the earliest moment something changes on its own: a healthy coordinator
   *  going stale (the live topology shows it) or a silent one expiring. */
  scheduleAlarm() {
    if (this.entries.size === 0) return;
    const now = this.deps.now();
    let next = Infinity;
    const stale = this.staleAfterMs();
    const expire = this.expireAfterMs();
    for (const e of this.entries.values()) {
      const d = now - e.lastSeen < stale ? e.lastSeen + stale : e.lastSeen + expire;
      next = Math.min(next, d);
    }
    if (this.alarmAt !== null && this.alarmAt <= next && this.alarmAt > now) return;
    if (this.alarmAt !== null && this.alarmAt > now && next >= this.alarmAt) return;
    const at = Math.max(next, now + 1e3);
    this.alarmAt = at;
    this.meter.count("rows_written", 1, now);
    this.deps.setAlarm(at);
  }
  /** The alarm fired: expire the silent, tell the sockets, set the next. */
  alarm() {
    this.countRequest();
    const now = this.deps.now();
    this.alarmAt = null;
    const expire = this.expireAfterMs();
    for (const e of [...this.entries.values()]) {
      if (now - e.lastSeen >= expire) {
        this.entries.delete(e.id);
        this.write("DELETE FROM coordinators WHERE id = ?", e.id);
        console.log(`coordinator ${e.id} expired: no heartbeat for ${Math.round((now - e.lastSeen) / 1e3)} s`);
      }
    }
    this.maybeSaveMeter(true);
    this.broadcast();
    this.scheduleAlarm();
  }
  // ---- auth ----------------------------------------------------------------------------------
  isAdmin(req) {
    const t = bearer(req);
    return t !== null && sameSecret(t, this.config.adminToken);
  }
  requireAdmin(req) {
    if (!this.isAdmin(req)) {
      throw ApiError.unauthorized("this needs the admin token (Authorization: Bearer \u2026; admin.token beside the router's data)");
    }
  }
  /** The claims of the request's credential of `role`: 401 without a valid one, 403 for
   *  another role or a revoked node. */
  async member(req, role) {
    const t = bearer(req);
    if (!t) {
      throw ApiError.unauthorized(
        `this needs a ${role} credential (Authorization: Bearer \u2026); enrol with \`rma ${role} --join TOKEN\``
      );
    }
    const c = await this.config.federation.verify(t, Math.floor(this.deps.now() / 1e3));
    if (c.role !== role) {
      throw ApiError.forbidden(`this needs a ${role} credential; ${c.sub} holds a ${c.role} credential`);
    }
    if (this.revoked.has(c.sub)) throw ApiError.forbidden(`${role} ${c.sub} has been revoked`);
    return c;
  }
  revokedLately() {
    const since = this.deps.now() - 24 * 3600 * 1e3 - MINUTE;
    return [...this.revoked].filter(([, at]) => at >= since).map(([id]) => id);
  }
  // ---- the API -------------------------------------------------------------------------------
  /** Answers one request that reached the Durable Object. */
  async handle(req) {
    const url = new URL(req.url);
    const path = url.pathname;
    const m = req.method;
    const workerRequests = Number(req.headers.get("x-rma-worker-requests") ?? "0");
    this.countWorkerRequests(workerRequests);
    if (path !== "/api/topology/ws") this.countRequest();
    if (path === "/internal/routes" && m === "POST") return json(this.routes(await req.json()));
    if (path === "/internal/failure" && m === "POST") {
      const { id } = await req.json();
      this.markUnreachable(id);
      return json({ status: "ok" });
    }
    if (path === "/api/edge/register" && m === "POST") return json(await this.register(req));
    if (path === "/api/edge/heartbeat" && m === "POST") return json(await this.heartbeat(req));
    const del = /^\/api\/edge\/([^/]+)$/.exec(path);
    if (del && m === "DELETE") return json(await this.deregister(req, decodeURIComponent(del[1])));
    if (path === "/api/worker/register" && m === "POST") return this.registerWorker(req);
    if (path === "/api/worker/heartbeat" && m === "POST") return this.workerHeartbeat(req);
    if (path === "/api/enroll" && m === "POST") return json(await this.enroll(req));
    if (path === "/api/credentials/renew" && m === "POST") return json(await this.renew(req));
    if (path === "/api/admin/invites" && m === "POST") return json(await this.invite(req));
    if (path === "/api/admin/nodes" && m === "GET") return json(this.nodes(req));
    const rev = /^\/api\/admin\/nodes\/([^/]+)\/revoke$/.exec(path);
    if (rev && m === "POST") return json(this.revoke(req, decodeURIComponent(rev[1])));
    if (path === "/api/admin/coordinators" && m === "GET") return json(this.coordinators(req));
    if (path === "/api/admin/usage" && m === "GET") {
      this.requireAdmin(req);
      return json(this.usage());
    }
    if (path === "/api/topology" && m === "GET") {
      const t = this.topology();
      return json(this.isAdmin(req) ? t : redacted(t));
    }
    if (path === "/health" && m === "GET") return this.health();
    if (path === "/metrics" && m === "GET") {
      this.requireAdmin(req);
      return new Response(this.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
    }
    throw ApiError.notFound(`no route for ${path}`);
  }
  routes(body = {}) {
    const now = this.deps.now();
    for (const [id, n] of Object.entries(body.served ?? {})) {
      const e = this.entries.get(id);
      if (e && Number.isFinite(n)) for (let i = 0; i < Math.min(n, 1e4); i++) e.served.push(now);
    }
    for (const id of body.failed ?? []) this.markUnreachable(id);
    const out = [];
    for (const e of this.entries.values()) {
      const status = this.status(e, now);
      out.push({
        id: e.id,
        url: e.url,
        services: Object.keys(e.services).filter((s) => e.services[s] > 0),
        status,
        load: e.load,
        active_requests: e.activeRequests,
        active_workers: e.workers.filter((w) => w.status === "active").length
      });
    }
    return { coordinators: out, revoked: this.revokedLately(), stale_after_ms: this.staleAfterMs() };
  }
  markUnreachable(id) {
    const e = this.entries.get(id);
    if (e && !e.unreachable) {
      e.unreachable = true;
      e.failures.push(this.deps.now());
      this.broadcast();
    }
  }
  async register(req) {
    const claims = await this.member(req, "coordinator");
    const body = await readJson(req);
    const raw = body.url ?? body.tunnel_url;
    if (!raw) throw ApiError.badRequest("url (or tunnel_url) is required: the URL the router reaches this coordinator at");
    const url = checkRegistered(this.config.policy, "url", raw);
    let id = claims.sub;
    if (body.coordinator_id != null) {
      id = checkId("coordinator_id", body.coordinator_id);
      sameNode(claims, "coordinator", id);
    }
    const now = this.deps.now();
    const prev = this.entries.get(id);
    const location = body.location ?? null;
    const services = {};
    for (const s of body.services ?? []) if (typeof s === "string" && allows(claims, s)) services[s] = 1;
    const keep = prev && prev.url === url;
    const e = {
      id,
      url,
      location,
      registeredAt: prev?.registeredAt ?? now,
      lastSeen: now,
      services: keep ? prev.services : services,
      workers: keep ? prev.workers : [],
      load: keep ? prev.load : 0,
      activeRequests: 0,
      unreachable: false,
      shape: keep ? prev.shape : "",
      served: keep ? prev.served : [],
      failures: keep ? prev.failures : []
    };
    if (!keep || prev.location !== location) {
      e.shape = shapeOf(e.services);
      this.write(
        "INSERT OR REPLACE INTO coordinators (id, url, location, registered_at_ms, inventory) VALUES (?, ?, ?, ?, ?)",
        id,
        url,
        location,
        e.registeredAt,
        JSON.stringify({ services: e.services })
      );
    }
    this.entries.set(id, e);
    const total = this.entries.size;
    console.log(`coordinator ${id} registered at ${url}; ${total} in the federation`);
    this.broadcast();
    this.scheduleAlarm();
    return {
      status: "registered",
      role: "edge_coordinator",
      coordinator_id: id,
      total_coordinators: total,
      message: `coordinator ${id} registered at ${url}; ${total} coordinator(s) in the federation`,
      heartbeat_interval_ms: this.heartbeatIntervalMs()
    };
  }
  async heartbeat(req) {
    const claims = await this.member(req, "coordinator");
    const hb = await readJson(req);
    if (typeof hb.coordinator_id !== "string") throw ApiError.badRequest("coordinator_id is required");
    sameNode(claims, "coordinator", hb.coordinator_id);
    const e = this.entries.get(hb.coordinator_id);
    if (!e) throw ApiError.notFound(`coordinator ${JSON.stringify(hb.coordinator_id)} is not registered; register again`);
    const services = {};
    for (const [s, n] of Object.entries(hb.services ?? {})) if (allows(claims, s)) services[s] = Number(n) || 0;
    const workers = Array.isArray(hb.workers) ? hb.workers : [];
    e.lastSeen = this.deps.now();
    e.unreachable = false;
    e.services = services;
    e.workers = workers;
    e.load = Number(hb.load) || 0;
    e.activeRequests = Number(hb.active_requests) || 0;
    const shape = shapeOf(services);
    if (shape !== e.shape) {
      e.shape = shape;
      this.write("UPDATE coordinators SET inventory = ? WHERE id = ?", JSON.stringify({ services }), e.id);
    }
    for (const w of workers) if (!this.homes.has(w.id)) this.homes.set(w.id, e.id);
    this.broadcast();
    this.scheduleAlarm();
    return { status: "ok", revoked: this.revokedLately(), heartbeat_interval_ms: this.heartbeatIntervalMs() };
  }
  async deregister(req, id) {
    if (!this.isAdmin(req)) {
      const c = await this.member(req, "coordinator");
      sameNode(c, "coordinator", id);
    }
    checkId("coordinator_id", id);
    const known = this.entries.delete(id);
    const inFile = this.write("DELETE FROM coordinators WHERE id = ?", id) > 0;
    if (!known && !inFile) throw ApiError.notFound(`coordinator ${JSON.stringify(id)} is not registered`);
    console.log(`coordinator ${id} deregistered`);
    this.broadcast();
    return { status: "deregistered" };
  }
  /** Coordinators to place a worker with: fewest active workers first, unreachable last. */
  candidatesForWorker(now) {
    const homed = /* @__PURE__ */ __name((id) => [...this.homes.values()].filter((c) => c === id).length, "homed");
    const active = /* @__PURE__ */ __name((e) => e.workers.filter((w) => w.status === "active").length, "active");
    const all = [...this.entries.values()].filter((e) => this.status(e, now) !== "stale");
    const t = this.turn++;
    const rotated = all.map((_, i) => all[(i + t) % all.length]);
    return rotated.sort(
      (a, b) => Number(a.unreachable) - Number(b.unreachable) || Math.max(active(a), homed(a.id)) - Math.max(active(b), homed(b.id))
    );
  }
  async callCoordinator(e, path, req, body) {
    const headers = { "content-type": "application/json" };
    for (const h of ["authorization", "x-rma-proof", "x-request-id"]) {
      const v = req.headers.get(h);
      if (v) headers[h] = v;
    }
    return this.deps.fetch(`${e.url}${path}`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(Math.min(this.config.requestTimeoutMs, 3e4))
    });
  }
  async registerWorker(req) {
    const claims = await this.member(req, "worker");
    const text = await req.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw ApiError.badRequest(`Failed to parse the request body as JSON: ${e.message}`);
    }
    const wid = checkId("worker_id", body?.worker_id);
    sameNode(claims, "worker", wid);
    const now = this.deps.now();
    const candidates = this.candidatesForWorker(now);
    if (candidates.length === 0) {
      throw ApiError.noCoordinator("no coordinator is registered and fresh; start one with `rma coordinator --router-url ...`");
    }
    let last = "";
    for (const e of candidates) {
      this.homes.set(wid, e.id);
      let r;
      try {
        r = await this.callCoordinator(e, "/api/worker/register", req, text);
      } catch (err) {
        this.markUnreachable(e.id);
        last = `coordinator ${e.id} unreachable: ${err.message}`;
        continue;
      }
      if (r.ok) {
        const reply = await r.json();
        if (typeof reply.coordinator_id === "string") this.homes.set(wid, reply.coordinator_id);
        return json(reply);
      }
      if (r.status >= 400 && r.status < 500) return passError(r);
      last = `coordinator ${e.id} answered ${r.status}`;
    }
    throw ApiError.noCoordinator(`no coordinator accepted the registration (${last})`);
  }
  async workerHeartbeat(req) {
    const claims = await this.member(req, "worker");
    const text = await req.text();
    let hb;
    try {
      hb = JSON.parse(text);
    } catch (e) {
      throw ApiError.badRequest(`Failed to parse the request body as JSON: ${e.message}`);
    }
    const wid = checkId("worker_id", hb?.worker_id);
    sameNode(claims, "worker", wid);
    const home = this.entries.get(this.homes.get(wid) ?? "");
    if (!home) throw ApiError.notFound(`worker ${JSON.stringify(wid)} is not registered with any coordinator; register again`);
    try {
      const r = await this.callCoordinator(home, "/api/worker/heartbeat", req, text);
      return r.ok ? json(await r.json()) : passError(r);
    } catch (err) {
      this.markUnreachable(home.id);
      throw ApiError.upstream(`coordinator ${home.id} holding this worker is unreachable: ${err.message}`);
    }
  }
  // ---- membership ----------------------------------------------------------------------------
  async invite(req) {
    this.requireAdmin(req);
    const body = await readJson(req);
    const role = String(body.role ?? "").trim().toLowerCase();
    if (!ROLES.includes(role)) throw ApiError.badRequest(`role: ${JSON.stringify(body.role)} is not a role (coordinator, worker or client)`);
    for (const s of body.services ?? []) checkId("services", s);
    if (body.owner != null) checkId("owner", body.owner);
    const ttlS = body.ttl_s ?? 900;
    if (!(ttlS >= 1 && ttlS <= 30 * 24 * 3600)) throw ApiError.badRequest("ttl_s must be between 1 second and 30 days");
    const uses = body.uses ?? 1;
    if (!(Number.isInteger(uses) && uses >= 1 && uses <= 1e4)) throw ApiError.badRequest("uses must be between 1 and 10000");
    let router = new URL(req.url).origin;
    if (body.router_url != null) {
      try {
        const u = new URL(body.router_url);
        if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
      } catch {
        throw ApiError.badRequest(`router_url ${JSON.stringify(body.router_url)} is not an absolute http(s) URL with a host`);
      }
      router = body.router_url.replace(/\/+$/, "");
    }
    const { token, secret } = newJoinToken(router);
    const now = this.deps.now();
    const expires = now + ttlS * 1e3;
    this.write("DELETE FROM invites WHERE expires_at_ms <= ?", now);
    this.write(
      "INSERT INTO invites (hash, role, services, owner, uses_left, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
      secretHash(secret),
      role,
      body.services ? JSON.stringify(body.services) : null,
      body.owner ?? null,
      uses,
      expires
    );
    console.log(`invite made: ${role}, ${uses} use(s), ${ttlS} s`);
    return { token, role, expires_at: rfc3339(expires), uses };
  }
  async enroll(req) {
    const body = await readJson(req);
    const token = parseJoinToken(String(body.token ?? ""));
    const keyText = String(body.public_key ?? "").trim();
    await publicKey(keyText);
    const wanted = body.node_id ?? "node";
    checkId("node_id", wanted);
    const now = this.deps.now();
    const hash = secretHash(token.secret);
    const rows = this.deps.sql.exec("SELECT * FROM invites WHERE hash = ? AND uses_left > 0 AND expires_at_ms > ?", hash, now).toArray();
    const inv = rows[0];
    if (!inv) {
      throw ApiError.unauthorized("the join token is unknown, expired or used up; ask an admin for a new one (`rma invite`)");
    }
    if (Number(inv.uses_left) <= 1) this.write("DELETE FROM invites WHERE hash = ?", hash);
    else this.write("UPDATE invites SET uses_left = uses_left - 1 WHERE hash = ?", hash);
    const role = String(inv.role);
    const services = inv.services ? JSON.parse(String(inv.services)) : null;
    const owner = inv.owner ?? null;
    let nodeId = null;
    for (const candidate of [wanted, `${wanted}-${keySuffix(keyText)}`]) {
      const existing = this.deps.sql.exec("SELECT public_key FROM nodes WHERE node_id = ?", candidate).toArray()[0];
      if (existing && existing.public_key !== keyText) continue;
      if (!existing) {
        this.write(
          "INSERT INTO nodes (node_id, role, services, owner, public_key, enrolled_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
          candidate,
          role,
          services ? JSON.stringify(services) : null,
          owner,
          keyText,
          now
        );
      }
      nodeId = candidate;
      break;
    }
    if (!nodeId) throw new ApiError(409, "conflict", `node id ${JSON.stringify(wanted)} is taken; enrol with another id`);
    console.log(`node ${nodeId} enrolled as ${role}`);
    return this.issue(nodeId, role, services, owner, keyText);
  }
  async issue(nodeId, role, services, owner, key) {
    const c = await this.config.federation.issue(nodeId, role, services, owner, key, Math.floor(this.deps.now() / 1e3));
    return {
      node_id: nodeId,
      role,
      credential: c.token,
      expires_at: rfc3339(c.claims.exp * 1e3),
      federation_key: this.config.federation.publicText
    };
  }
  async renew(req) {
    const body = await readJson(req);
    const id = checkId("node_id", body.node_id);
    const nowS = Math.floor(this.deps.now() / 1e3);
    if (typeof body.timestamp !== "number" || Math.abs(body.timestamp - nowS) > RENEW_SKEW_S) {
      throw ApiError.unauthorized("the renewal's timestamp is more than 5 minutes from the router's clock; check the node's clock");
    }
    const n = this.deps.sql.exec("SELECT * FROM nodes WHERE node_id = ?", id).toArray()[0];
    if (!n) throw ApiError.unauthorized(`node ${JSON.stringify(id)} is not enrolled here`);
    if (n.revoked_at_ms != null) throw ApiError.forbidden(`node ${id} has been revoked`);
    const key = await publicKey(String(n.public_key));
    if (!await verifySig(key, renewMessage(id, body.timestamp), String(body.signature ?? ""))) {
      throw ApiError.unauthorized("the signature is not the node's");
    }
    return this.issue(id, String(n.role), n.services ? JSON.parse(String(n.services)) : null, n.owner ?? null, String(n.public_key));
  }
  nodes(req) {
    this.requireAdmin(req);
    return this.deps.sql.exec("SELECT * FROM nodes ORDER BY node_id").toArray().map((n) => ({
      node_id: String(n.node_id),
      role: String(n.role),
      services: n.services ? JSON.parse(String(n.services)) : null,
      owner: n.owner ?? null,
      public_key: String(n.public_key),
      enrolled_at: rfc3339(Number(n.enrolled_at_ms)),
      revoked_at: n.revoked_at_ms != null ? rfc3339(Number(n.revoked_at_ms)) : null
    }));
  }
  revoke(req, id) {
    this.requireAdmin(req);
    checkId("node_id", id);
    const now = this.deps.now();
    this.write("UPDATE nodes SET revoked_at_ms = ? WHERE node_id = ? AND revoked_at_ms IS NULL", now, id);
    if (!this.revoked.has(id)) this.revoked.set(id, now);
    if (this.entries.delete(id)) {
      this.write("DELETE FROM coordinators WHERE id = ?", id);
      console.log(`revoked coordinator ${id} removed from routing`);
      this.broadcast();
    }
    console.warn(`node ${id} revoked`);
    return { status: "revoked" };
  }
  // ---- views ---------------------------------------------------------------------------------
  coordinators(req) {
    this.requireAdmin(req);
    const now = this.deps.now();
    return [...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id)).map((e) => ({
      coordinator_id: e.id,
      url: e.url,
      location: e.location,
      registered_at: rfc3339(e.registeredAt),
      last_seen: rfc3339(e.lastSeen),
      status: this.status(e, now)
    }));
  }
  topology() {
    const now = this.deps.now();
    const t = { coordinators: [], workers: [] };
    const recent = /* @__PURE__ */ __name((xs) => {
      while (xs.length && now - xs[0] > MINUTE) xs.shift();
      return xs.length;
    }, "recent");
    for (const e of [...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      const status = this.status(e, now);
      t.coordinators.push({
        id: e.id,
        url: e.url,
        workers: e.workers.length,
        load: e.load,
        status,
        requests_last_minute: recent(e.served),
        last_seen: rfc3339(e.lastSeen),
        location: e.location,
        active_requests: e.activeRequests,
        failures_last_minute: recent(e.failures),
        latency_p99_ms: {}
      });
      for (const w of e.workers) {
        const home = this.homes.get(w.id);
        if (home && home !== e.id && this.entries.has(home)) continue;
        const ws = status !== "healthy" && w.status === "active" ? "stale" : w.status;
        t.workers.push({
          id: w.id,
          type: w.type,
          coordinator: e.id,
          services: w.services,
          status: ws,
          load: w.load,
          active_requests: w.active_requests,
          requests_last_minute: w.requests_last_minute,
          last_seen: w.last_seen,
          latency_p99_ms: w.latency_p99_ms ?? {},
          failures_last_minute: w.failures_last_minute
        });
      }
    }
    return t;
  }
  health() {
    const now = this.deps.now();
    const fresh = this.freshCount(now);
    const total = this.entries.size;
    let body;
    let code = 200;
    if (fresh > 0) {
      const words = `${fresh} of ${total} coordinator(s) fresh`;
      const w = this.usage().warning;
      body = w ? { status: "degraded", coordinators: fresh, message: `${words}; usage past 80 % of the free tier: ${w}` } : { status: "healthy", coordinators: fresh, message: words };
    } else {
      code = 503;
      body = {
        status: "degraded",
        coordinators: 0,
        message: total === 0 ? "no coordinator is registered" : `none of ${total} registered coordinator(s) has sent a heartbeat recently`
      };
    }
    return json(body, code);
  }
  metrics() {
    const now = this.deps.now();
    const by = { healthy: 0, unreachable: 0, stale: 0 };
    for (const e of this.entries.values()) by[this.status(e, now)]++;
    const lines = ["# TYPE rma_router_coordinators gauge"];
    for (const [s, n] of Object.entries(by)) lines.push(`rma_router_coordinators{status="${s}"} ${n}`);
    lines.push("# TYPE rma_router_usage_today gauge");
    for (const c of this.usage().counters) lines.push(`rma_router_usage_today{counter="${c.name}"} ${c.used}`);
    lines.push("# TYPE rma_router_heartbeat_interval_seconds gauge");
    lines.push(`rma_router_heartbeat_interval_seconds ${this.heartbeatIntervalMs() / 1e3}`);
    return lines.join("\n") + "\n";
  }
  // ---- the live topology ---------------------------------------------------------------------
  /** Sends the topology to every socket (the redacted one to those not signed in). */
  broadcast() {
    const sockets = this.deps.sockets();
    if (sockets.length === 0) return;
    const t = this.topology();
    const full = JSON.stringify(t);
    const open = JSON.stringify(redacted(t));
    for (const s of sockets) {
      try {
        s.send(s.admin ? full : open);
      } catch {
      }
    }
  }
  /** A message on a topology socket: `{admin_token}` signs it in. Counted at 1/20. */
  socketMessage(s, text) {
    this.countRequest(1 / 20);
    let token;
    try {
      token = JSON.parse(text)?.admin_token;
    } catch {
      token = void 0;
    }
    if (typeof token === "string" && sameSecret(token, this.config.adminToken)) {
      s.admin = true;
      s.send(JSON.stringify(this.topology()));
      return true;
    }
    s.send(JSON.stringify({ error: "unauthorized", message: "the admin token is not valid" }));
    return false;
  }
  /** The first message of a new socket. */
  socketOpened(s) {
    this.countRequest();
    const t = this.topology();
    s.send(JSON.stringify(s.admin ? t : redacted(t)));
  }
  /** For tests and the simulation. */
  count(kind, n) {
    this.meter.count(kind, n, this.deps.now());
  }
};
function redacted(t) {
  return { ...t, coordinators: t.coordinators.map((c) => ({ ...c, url: "", location: null })) };
}
__name(redacted, "redacted");
async function passError(r) {
  let message = `the coordinator answered ${r.status}`;
  try {
    const b = await r.json();
    if (typeof b.message === "string") message = b.message;
  } catch {
  }
  return new ApiError(r.status, codeOf(r.status), message).response();
}
__name(passError, "passError");
function codeOf(status) {
  return status === 503 ? "no_worker" : status >= 500 ? "upstream_failed" : status === 401 ? "unauthorized" : status === 403 ? "forbidden" : status === 404 ? "not_found" : status === 429 ? "rate_limited" : "bad_request";
}
__name(codeOf, "codeOf");

// worker.ts
var Queue = class {
  static {
    __name(this, "Queue");
  }
  h = [];
  seq = 0;
  push(t, run) {
    const e = { t, seq: this.seq++, run };
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = i - 1 >> 1;
      if (less(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }
  pop() {
    const h = this.h;
    if (h.length === 0) return void 0;
    const top = h[0];
    const last = h.pop();
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
};
var less = /* @__PURE__ */ __name((a, b) => a.t < b.t || a.t === b.t && a.seq < b.seq, "less");
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = a + 1831565813 >>> 0;
    let t = a;
    t = Math.imul(t ^ t >>> 15, t | 1);
    t ^= t + Math.imul(t ^ t >>> 7, t | 61);
    return ((t ^ t >>> 14) >>> 0) / 4294967296;
  };
}
__name(rng, "rng");
var DAY = 864e5;
var Sim = class extends DurableObject {
  static {
    __name(this, "Sim");
  }
  async fetch(req) {
    const q = new URL(req.url).searchParams;
    const workers = Number(q.get("workers") ?? 1e3);
    const coordinators = Number(q.get("coordinators") ?? 20);
    const restartShare = Number(q.get("restart_share") ?? 0.1);
    const intervalS = Number(q.get("heartbeat_interval_s") ?? 120);
    const budget = Number(q.get("heartbeat_budget") ?? 5e3);
    const seed = Number(q.get("seed") ?? 1);
    const started = Date.now();
    const out = await simulate({ workers, coordinators, restartShare, intervalS, budget, seed }, this.ctx);
    return Response.json({ ...out, wall_ms: Date.now() - started });
  }
};
async function simulate(p, ctx) {
  for (const t of ["coordinators", "nodes", "invites", "meta"]) ctx.storage.sql.exec(`DROP TABLE IF EXISTS ${t}`);
  const random = rng(p.seed);
  const day0 = Math.floor(Date.now() / DAY) * DAY + DAY;
  let now = day0;
  const queue = new Queue();
  const seed = hex(crypto.getRandomValues(new Uint8Array(32)));
  const federation = await Federation.fromSeedHex(seed);
  const config = {
    staleAfterMs: 6e5,
    expireAfterMs: 12e5,
    heartbeatIntervalMs: p.intervalS * 1e3,
    heartbeatBudget: p.budget,
    requestTimeoutMs: 3e4,
    policy: { allowHttp: false, allowPrivate: false, allowLoopback: false },
    adminToken: hex(crypto.getRandomValues(new Uint8Array(32))),
    federation
  };
  const coords = /* @__PURE__ */ new Map();
  const byUrl = /* @__PURE__ */ new Map();
  let alarmAt = null;
  let alarmsSet = 0;
  const counts = { worker_requests: 0, coordinator_heartbeats: 0, change_heartbeats: 0, worker_registrations: 0, alarms: 0 };
  const registry = new Registry(
    {
      sql: ctx.storage.sql,
      now: /* @__PURE__ */ __name(() => now, "now"),
      // The coordinators the router passes worker registrations to.
      fetch: /* @__PURE__ */ __name(async (url, init) => {
        const c = byUrl.get(url.replace(/\/api\/worker\/register$/, ""));
        if (!c) throw new Error("connection refused");
        const body = JSON.parse(String(init.body));
        c.workers.set(body.worker_id, "active");
        changed(c);
        return Response.json({
          status: "registered",
          worker_id: body.worker_id,
          worker_type: "cpu",
          assigned_services: ["ocr", "extract"],
          coordinator_id: c.id,
          coordinator_url: c.url,
          heartbeat_interval_s: 30
        });
      }, "fetch"),
      setAlarm: /* @__PURE__ */ __name((at) => {
        alarmsSet++;
        alarmAt = at;
        queue.push(at, () => {
          if (alarmAt !== at) return;
          alarmAt = null;
          counts.alarms++;
          registry.alarm();
        });
      }, "setAlarm"),
      sockets: /* @__PURE__ */ __name(() => [], "sockets")
    },
    config
  );
  const call = /* @__PURE__ */ __name(async (path, token, body) => {
    counts.worker_requests++;
    const req = new Request(`https://router.example${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-rma-worker-requests": "1" },
      body: JSON.stringify(body)
    });
    const r = await registry.handle(req);
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  }, "call");
  const credential = /* @__PURE__ */ __name(async (id, role) => (await federation.issue(id, role, null, null, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", Math.floor(now / 1e3))).token, "credential");
  const summaries = /* @__PURE__ */ __name((c) => [...c.workers].map(([id, status]) => ({
    id,
    type: "cpu",
    services: ["ocr", "extract"],
    status,
    active_requests: 0,
    load: random(),
    requests_last_minute: 0,
    last_seen: "",
    failures_last_minute: 0
  })), "summaries");
  const heartbeat = /* @__PURE__ */ __name(async (c, change) => {
    c.lastSent = now;
    c.changed = false;
    if (change) counts.change_heartbeats++;
    else counts.coordinator_heartbeats++;
    const reply = await call("/api/edge/heartbeat", c.token, {
      coordinator_id: c.id,
      active_requests: 0,
      load: random(),
      services: { ocr: c.workers.size, extract: c.workers.size },
      workers: summaries(c)
    });
    if (typeof reply.heartbeat_interval_ms === "number") c.intervalMs = reply.heartbeat_interval_ms;
  }, "heartbeat");
  function changed(c) {
    c.changed = true;
    if (c.changePending) return;
    c.changePending = true;
    const gap = Math.min(Math.max(c.intervalMs / 10, 50), 15e3, c.intervalMs);
    const epoch = c.epoch;
    queue.push(Math.max(now, c.lastSent + gap), async () => {
      c.changePending = false;
      if (c.epoch === epoch && c.changed) await heartbeat(c, true);
    });
  }
  __name(changed, "changed");
  const tick = /* @__PURE__ */ __name((c) => {
    const epoch = c.epoch;
    queue.push(now + c.intervalMs, async () => {
      if (c.epoch !== epoch) return;
      await heartbeat(c, false);
      tick(c);
    });
  }, "tick");
  const register = /* @__PURE__ */ __name(async (c) => {
    const reply = await call("/api/edge/register", c.token, { coordinator_id: c.id, url: c.url, services: ["ocr", "extract"] });
    c.intervalMs = reply.heartbeat_interval_ms ?? c.intervalMs;
    c.lastSent = now;
    tick(c);
  }, "register");
  for (let i = 0; i < p.coordinators; i++) {
    const c = {
      id: `c${i}`,
      url: `https://c${i}.example.org`,
      token: await credential(`c${i}`, "coordinator"),
      intervalMs: config.heartbeatIntervalMs,
      workers: /* @__PURE__ */ new Map(),
      changed: false,
      lastSent: 0,
      changePending: false,
      epoch: 0
    };
    coords.set(c.id, c);
    byUrl.set(c.url, c);
    queue.push(day0 + i * 1e3, () => register(c));
  }
  const homes = /* @__PURE__ */ new Map();
  for (let i = 0; i < p.workers; i++) {
    const id = `w${i}`;
    const token = await credential(id, "worker");
    const join = /* @__PURE__ */ __name(async () => {
      counts.worker_registrations++;
      const reply = await call("/api/worker/register", token, { worker_id: id, capabilities: {} });
      homes.set(id, coords.get(reply.coordinator_id));
    }, "join");
    queue.push(day0 + p.coordinators * 1e3 + random() * 6e5, join);
    if (random() < p.restartShare) {
      const at = day0 + 9e5 + random() * (DAY - 18e5);
      queue.push(at, () => {
        const c = homes.get(id);
        if (!c) return;
        c.workers.set(id, "stale");
        changed(c);
        queue.push(now + 9e4, () => {
          c.workers.delete(id);
          changed(c);
        });
        queue.push(now + 12e4, join);
      });
    }
  }
  queue.push(day0 + DAY / 2, async () => {
    const c = coords.get("c0");
    c.epoch++;
    const had = [...c.workers.keys()];
    c.workers.clear();
    await register(c);
    for (const w of had) c.workers.set(w, "active");
    changed(c);
  });
  const end = day0 + DAY - 1;
  for (let e = queue.pop(); e && e.t <= end; e = queue.pop()) {
    now = e.t;
    await e.run();
  }
  now = end;
  const usage = registry.usage();
  const used = /* @__PURE__ */ __name((name) => usage.counters.find((c) => c.name === name)?.used ?? 0, "used");
  return {
    workers: p.workers,
    coordinators: p.coordinators,
    restart_share: p.restartShare,
    heartbeat_interval_told_s: registry.heartbeatIntervalMs() / 1e3,
    worker_requests: counts.worker_requests,
    durable_object_requests: used("registry_requests"),
    rows_written: used("rows_written"),
    meter_requests: used("requests"),
    coordinator_heartbeats: counts.coordinator_heartbeats,
    change_heartbeats: counts.change_heartbeats,
    worker_registrations_through_router: counts.worker_registrations,
    alarms: counts.alarms,
    alarms_set: alarmsSet,
    free_tier: 1e5
  };
}
__name(simulate, "simulate");
var worker_default = {
  async fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname !== "/run") return new Response("GET /run?workers=1000&coordinators=20", { status: 404 });
    return env.SIM.get(env.SIM.newUniqueId()).fetch(req);
  }
};

// ../node_modules/wrangler/templates/middleware/middleware-ensure-req-body-drained.ts
var drainBody = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } finally {
    try {
      if (request.body !== null && !request.bodyUsed) {
        const reader = request.body.getReader();
        while (!(await reader.read()).done) {
        }
      }
    } catch (e) {
      console.error("Failed to drain the unused request body.", e);
    }
  }
}, "drainBody");
var middleware_ensure_req_body_drained_default = drainBody;

// ../node_modules/wrangler/templates/middleware/middleware-miniflare3-json-error.ts
function reduceError(e) {
  return {
    name: e?.name,
    message: e?.message ?? String(e),
    stack: e?.stack,
    cause: e?.cause === void 0 ? void 0 : reduceError(e.cause)
  };
}
__name(reduceError, "reduceError");
var jsonError = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } catch (e) {
    const error = reduceError(e);
    return Response.json(error, {
      status: 500,
      headers: { "MF-Experimental-Error-Stack": "true" }
    });
  }
}, "jsonError");
var middleware_miniflare3_json_error_default = jsonError;

// .wrangler/tmp/bundle-Z3fOze/middleware-insertion-facade.js
var __INTERNAL_WRANGLER_MIDDLEWARE__ = [
  middleware_ensure_req_body_drained_default,
  middleware_miniflare3_json_error_default
];
var middleware_insertion_facade_default = worker_default;

// ../node_modules/wrangler/templates/middleware/common.ts
var __facade_middleware__ = [];
function __facade_register__(...args) {
  __facade_middleware__.push(...args.flat());
}
__name(__facade_register__, "__facade_register__");
function __facade_invokeChain__(request, env, ctx, dispatch, middlewareChain) {
  const [head, ...tail] = middlewareChain;
  const middlewareCtx = {
    dispatch,
    next(newRequest, newEnv) {
      return __facade_invokeChain__(newRequest, newEnv, ctx, dispatch, tail);
    }
  };
  return head(request, env, ctx, middlewareCtx);
}
__name(__facade_invokeChain__, "__facade_invokeChain__");
function __facade_invoke__(request, env, ctx, dispatch, finalMiddleware) {
  return __facade_invokeChain__(request, env, ctx, dispatch, [
    ...__facade_middleware__,
    finalMiddleware
  ]);
}
__name(__facade_invoke__, "__facade_invoke__");

// .wrangler/tmp/bundle-Z3fOze/middleware-loader.entry.ts
var __Facade_ScheduledController__ = class ___Facade_ScheduledController__ {
  constructor(scheduledTime, cron, noRetry) {
    this.scheduledTime = scheduledTime;
    this.cron = cron;
    this.#noRetry = noRetry;
  }
  static {
    __name(this, "__Facade_ScheduledController__");
  }
  #noRetry;
  noRetry() {
    if (!(this instanceof ___Facade_ScheduledController__)) {
      throw new TypeError("Illegal invocation");
    }
    this.#noRetry();
  }
};
function wrapExportedHandler(worker) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return worker;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  const fetchDispatcher = /* @__PURE__ */ __name(function(request, env, ctx) {
    if (worker.fetch === void 0) {
      throw new Error("Handler does not export a fetch() function.");
    }
    return worker.fetch(request, env, ctx);
  }, "fetchDispatcher");
  return {
    ...worker,
    fetch(request, env, ctx) {
      const dispatcher = /* @__PURE__ */ __name(function(type, init) {
        if (type === "scheduled" && worker.scheduled !== void 0) {
          const controller = new __Facade_ScheduledController__(
            Date.now(),
            init.cron ?? "",
            () => {
            }
          );
          return worker.scheduled(controller, env, ctx);
        }
      }, "dispatcher");
      return __facade_invoke__(request, env, ctx, dispatcher, fetchDispatcher);
    }
  };
}
__name(wrapExportedHandler, "wrapExportedHandler");
function wrapWorkerEntrypoint(klass) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return klass;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  return class extends klass {
    #fetchDispatcher = /* @__PURE__ */ __name((request, env, ctx) => {
      this.env = env;
      this.ctx = ctx;
      if (super.fetch === void 0) {
        throw new Error("Entrypoint class does not define a fetch() function.");
      }
      return super.fetch(request);
    }, "#fetchDispatcher");
    #dispatcher = /* @__PURE__ */ __name((type, init) => {
      if (type === "scheduled" && super.scheduled !== void 0) {
        const controller = new __Facade_ScheduledController__(
          Date.now(),
          init.cron ?? "",
          () => {
          }
        );
        return super.scheduled(controller);
      }
    }, "#dispatcher");
    fetch(request) {
      return __facade_invoke__(
        request,
        this.env,
        this.ctx,
        this.#dispatcher,
        this.#fetchDispatcher
      );
    }
  };
}
__name(wrapWorkerEntrypoint, "wrapWorkerEntrypoint");
var WRAPPED_ENTRY;
if (typeof middleware_insertion_facade_default === "object") {
  WRAPPED_ENTRY = wrapExportedHandler(middleware_insertion_facade_default);
} else if (typeof middleware_insertion_facade_default === "function") {
  WRAPPED_ENTRY = wrapWorkerEntrypoint(middleware_insertion_facade_default);
}
var middleware_loader_entry_default = WRAPPED_ENTRY;
export {
  Sim,
  __INTERNAL_WRANGLER_MIDDLEWARE__,
  middleware_loader_entry_default as default
};
//# sourceMappingURL=worker.js.map
