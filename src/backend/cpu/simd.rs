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
