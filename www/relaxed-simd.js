// Whether this browser runs WebAssembly relaxed SIMD, and so which build the CPU workers load.
// The page's own module (Trunk's) uses simd128; relaxed/ holds the same crate built with
// `+relaxed-simd` (scripts/build-relaxed-wasm), whose register tiles use f32x4.relaxed_madd, a
// fused multiply-add where the processor has one. A browser refuses a whole module with one
// instruction it does not know, so this asks first: does it validate the smallest module that
// holds that instruction?

// A module with one function: three v128.const 0, f32x4.relaxed_madd (0xfd 0x105), drop.
const ZERO_V128 = [0xfd, 0x0c, ...new Array(16).fill(0)];
const BODY = [0x00, ...ZERO_V128, ...ZERO_V128, ...ZERO_V128, 0xfd, 0x85, 0x02, 0x1a, 0x0b];
const PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00], // types: () -> ()
  ...[0x03, 0x02, 0x01, 0x00], // functions: one of type 0
  ...[0x0a, BODY.length + 2, 0x01, BODY.length, ...BODY], // code
]);

export const relaxedSimd = (() => {
  try {
    return WebAssembly.validate(PROBE);
  } catch {
    return false;
  }
})();

// The name of the instruction set the CPU workers run, for the page's texts.
export const cpuInstructions = relaxedSimd ? "WebAssembly relaxed SIMD" : "WebAssembly SIMD";
