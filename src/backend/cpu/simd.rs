//! Which compiled copy of the hot loops runs.
//!
//! The loops are written once, as plain Rust over fixed-size arrays that LLVM vectorizes, and
//! compiled twice on x86-64: for the build's baseline (SSE2, so the binary runs on any x86-64)
//! and, inside `#[target_feature(enable = "avx2,fma")]` wrappers, for AVX2 + FMA, chosen at run
//! time when the processor has them. In wasm there is one copy, for simd128 (the build's
//! target features); the same source serves both.

use std::sync::OnceLock;

/// An instruction set the hot loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The build's baseline target: SSE2 on x86-64, simd128 in wasm. Multiply and add are
    /// separate roundings here.
    Portable,
    /// x86-64 with AVX2 and FMA (256-bit lanes, fused multiply-add).
    Avx2Fma,
}

impl Isa {
    /// The fastest instruction set this processor runs. `CM_CPU_ISA=portable` in the
    /// environment forces the baseline copy (to measure it, or to rule the fast one out).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let forced_portable = std::env::var("CM_CPU_ISA").is_ok_and(|v| v == "portable");
            if !forced_portable && Isa::Avx2Fma.is_available() {
                Isa::Avx2Fma
            } else {
                Isa::Portable
            }
        })
    }

    /// Whether this processor can run the copy compiled for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma => false,
        }
    }

    /// `self` where this processor runs it, else the baseline copy.
    pub fn or_portable(self) -> Isa {
        if self.is_available() {
            self
        } else {
            Isa::Portable
        }
    }
}

/// `acc += w x` over one row of a register tile (`w` broadcast to every lane).
#[inline(always)]
pub fn madd_broadcast<const FMA: bool, const N: usize>(w: f32, x: &[f32; N], acc: &mut [f32; N]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if N.is_multiple_of(4) {
        return wasm::madd_broadcast(w, x, acc);
    }
    for (a, &x) in acc.iter_mut().zip(x) {
        *a = madd::<FMA>(w, x, *a);
    }
}

/// `acc += a b`, lane by lane.
#[inline(always)]
pub fn madd_lanes<const FMA: bool, const N: usize>(a: &[f32; N], b: &[f32; N], acc: &mut [f32; N]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if N.is_multiple_of(4) {
        return wasm::madd_lanes(a, b, acc);
    }
    for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
        *acc = madd::<FMA>(a, b, *acc);
    }
}

/// The register tiles' multiply-adds in WebAssembly, written with simd128 intrinsics: from the
/// plain loops LLVM made code several times slower here (measured in Node: docs/engine.md).
/// In the build made with `+relaxed-simd` (which the page loads where the browser validates
/// it), each is one `f32x4.relaxed_madd`: a fused multiply-add where the processor has one
/// (x86-64 with FMA, ARM64), a multiply and an add elsewhere.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::{f32x4_splat, v128, v128_load, v128_store};

    #[inline(always)]
    fn madd4(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        return core::arch::wasm32::f32x4_relaxed_madd(a, b, c);
        #[cfg(not(target_feature = "relaxed-simd"))]
        return core::arch::wasm32::f32x4_add(core::arch::wasm32::f32x4_mul(a, b), c);
    }

    /// `acc += w x`, four lanes at a time (N is a multiple of 4).
    #[inline(always)]
    pub fn madd_broadcast<const N: usize>(w: f32, x: &[f32; N], acc: &mut [f32; N]) {
        let w = f32x4_splat(w);
        for (acc, x) in acc.chunks_exact_mut(4).zip(x.chunks_exact(4)) {
            // SAFETY: each chunk is 4 f32, one v128; v128_load and v128_store take unaligned
            // pointers.
            unsafe {
                let (a, xv) = (v128_load(acc.as_ptr().cast()), v128_load(x.as_ptr().cast()));
                v128_store(acc.as_mut_ptr().cast(), madd4(w, xv, a));
            }
        }
    }

    /// `acc += a b`, four lanes at a time (N is a multiple of 4).
    #[inline(always)]
    pub fn madd_lanes<const N: usize>(a: &[f32; N], b: &[f32; N], acc: &mut [f32; N]) {
        for ((acc, a), b) in acc.chunks_exact_mut(4).zip(a.chunks_exact(4)).zip(b.chunks_exact(4)) {
            // SAFETY: as in `madd_broadcast`.
            unsafe {
                let (av, bv) = (v128_load(a.as_ptr().cast()), v128_load(b.as_ptr().cast()));
                let c = v128_load(acc.as_ptr().cast());
                v128_store(acc.as_mut_ptr().cast(), madd4(av, bv, c));
            }
        }
    }
}

/// `a * b + c`: one fused instruction where the copy has FMA, a multiply and an add otherwise
/// (`f32::mul_add` without hardware FMA is a slow libm call).
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}
