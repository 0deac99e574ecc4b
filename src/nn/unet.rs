//! The reference network F of `docs/paper.md#the-reference-network`: a small U-Net over 28x28 digits
//! with a sinusoidal time embedding, two downsamplings, and skip connections by channel
//! concatenation. Forward and backward are written out by hand, in the order they run.

use super::layers::{Conv, Linear, NormSilu, ResBlock, ResBlockCache};
use super::params::{Init, ParamLayout};
use crate::backend::{BTensor, Backend};

/// Channel widths (C0, C1, C2) at 28x28, 14x14 and 7x7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Widths(pub [usize; 3]);

impl Widths {
    pub const TINY: Widths = Widths([8, 16, 16]);
    pub const SMALL: Widths = Widths([16, 32, 32]);
    pub const BASE: Widths = Widths([32, 64, 64]);

    /// `tiny`, `small`, `base`, or three comma-separated widths (each a multiple of 8, the
    /// GroupNorm group count).
    pub fn parse(s: &str) -> crate::Result<Widths> {
        match s {
            "tiny" => return Ok(Self::TINY),
            "small" => return Ok(Self::SMALL),
            "base" => return Ok(Self::BASE),
            _ => {}
        }
        let parts: Vec<usize> = s.split(',').filter_map(|p| p.trim().parse().ok()).collect();
        match parts[..] {
            [a, b, c] if [a, b, c].iter().all(|&w| w > 0 && w % 8 == 0) => Ok(Widths([a, b, c])),
            _ => Err(crate::Error::Invalid(format!(
                "width config '{s}': expected tiny, small, base or three multiples of 8 like 16,32,32"
            ))),
        }
    }
}

pub struct UNet {
    pub widths: Widths,
    /// Digit classes of a class-conditional network (10 for MNIST), 0 for an unconditional one.
    pub classes: usize,
    pub layout: ParamLayout,
    time1: Linear,
    time2: Linear,
    /// The label embedding of a class-conditional network: a linear map of the one-hot label,
    /// added to the time embedding. The all-zero one-hot row is "no label" (label dropout), so
    /// one network samples both with and without a digit.
    label: Option<Linear>,
    stem: Conv,
    enc28: ResBlock,
    down14: Conv,
    enc14: ResBlock,
    down7: Conv,
    enc7: ResBlock,
    mid: ResBlock,
    dec7: ResBlock,
    up14: Conv,
    dec14: ResBlock,
    up28: Conv,
    dec28: ResBlock,
    head_norm: NormSilu,
    head: Conv,
}

/// Activations the backward pass needs, named after the forward's variables.
pub struct UNetCache<B: Backend> {
    x: BTensor<B>,
    labels: Option<BTensor<B>>,
    emb: BTensor<B>,
    t1: BTensor<B>,
    t2: BTensor<B>,
    temb: BTensor<B>,
    e28: BTensor<B>,
    e14: BTensor<B>,
    s14: BTensor<B>,
    s28: BTensor<B>,
    u28: BTensor<B>,
    head_stats: BTensor<B>,
    head_in: BTensor<B>,
    enc28: ResBlockCache<B>,
    enc14: ResBlockCache<B>,
    enc7: ResBlockCache<B>,
    mid: ResBlockCache<B>,
    dec7: ResBlockCache<B>,
    dec14: ResBlockCache<B>,
    dec28: ResBlockCache<B>,
}

/// `[a, b]` along channels.
fn concat<B: Backend>(be: &B, a: &BTensor<B>, b: &BTensor<B>) -> BTensor<B> {
    let (ca, cb) = (a.dim(1), b.dim(1));
    let out = be.empty(&[a.dim(0), ca + cb, a.dim(2), a.dim(3)]);
    be.copy_channels(a, 0, &out, 0, ca, false);
    be.copy_channels(b, 0, &out, ca, cb, false);
    out
}

/// The backward of [`concat`]: the first `first` channels, and the rest.
fn split<B: Backend>(be: &B, t: &BTensor<B>, first: usize) -> (BTensor<B>, BTensor<B>) {
    let (n, c, h, w) = (t.dim(0), t.dim(1), t.dim(2), t.dim(3));
    let (a, b) = (be.empty(&[n, first, h, w]), be.empty(&[n, c - first, h, w]));
    be.copy_channels(t, 0, &a, 0, first, false);
    be.copy_channels(t, first, &b, 0, c - first, false);
    (a, b)
}

fn upsample<B: Backend>(be: &B, x: &BTensor<B>) -> BTensor<B> {
    let y = be.empty(&[x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)]);
    be.upsample2x(x, &y);
    y
}

fn upsample_backward<B: Backend>(be: &B, dy: &BTensor<B>) -> BTensor<B> {
    let dx = be.empty(&[dy.dim(0), dy.dim(1), dy.dim(2) / 2, dy.dim(3) / 2]);
    be.upsample2x_backward(dy, &dx);
    dx
}

fn sum<B: Backend>(be: &B, a: &BTensor<B>, b: &BTensor<B>) -> BTensor<B> {
    let out = be.empty(&a.shape);
    be.add(a, b, &out);
    out
}

impl UNet {
    /// The unconditional network of `docs/paper.md#the-reference-network`.
    pub fn new(widths: Widths) -> Self {
        Self::with_classes(widths, 0)
    }

    /// The network with a label embedding for `classes` classes (0: unconditional). Its
    /// parameters come after the unconditional network's, so the two share every other offset.
    pub fn with_classes(widths: Widths, classes: usize) -> Self {
        let [c0, c1, c2] = widths.0;
        let t = 4 * c0; // time-embedding width
        let l = &mut ParamLayout::default();
        let net = UNet {
            widths,
            time1: Linear::new(l, "time.0", 2 * c0, t),
            time2: Linear::new(l, "time.2", t, t),
            stem: Conv::new(l, "stem", 1, c0, 3, 1),
            enc28: ResBlock::new(l, "down.0", c0, c0, t),
            down14: Conv::new(l, "down.1", c0, c0, 3, 2),
            enc14: ResBlock::new(l, "down.2", c0, c1, t),
            down7: Conv::new(l, "down.3", c1, c1, 3, 2),
            enc7: ResBlock::new(l, "down.4", c1, c2, t),
            mid: ResBlock::new(l, "mid", c2, c2, t),
            dec7: ResBlock::new(l, "up.0", c2 + c2, c2, t),
            up14: Conv::new(l, "up.1", c2, c2, 3, 1),
            dec14: ResBlock::new(l, "up.2", c2 + c1, c1, t),
            up28: Conv::new(l, "up.3", c1, c1, 3, 1),
            dec28: ResBlock::new(l, "up.4", c1 + c0, c0, t),
            head_norm: NormSilu::new(l, "head.norm", c0),
            head: Conv::new(l, "head.conv", c0, 1, 3, 1),
            // Zero at the start: the network begins as the unconditional one (and a run
            // started from an unconditional network's weights begins exactly as that network).
            label: (classes > 0).then(|| Linear::with_weight_init(l, "label", classes, t, Init::Zeros)),
            classes,
            layout: ParamLayout::default(),
        };
        UNet { layout: std::mem::take(l), ..net }
    }

    /// `F(x, c_noise, y)`: x `[N, 1, H, W]` (already scaled by c_in; H and W multiples of 4),
    /// c_noise `[N]`, and for a class-conditional network the one-hot labels `[N, classes]`
    /// (a zero row: no label). Returns the output `[N, 1, H, W]` and what the backward needs
    /// (drop it when no gradient is wanted).
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        x: &BTensor<B>,
        c_noise: &BTensor<B>,
        labels: Option<&BTensor<B>>,
    ) -> (BTensor<B>, UNetCache<B>) {
        let n = x.dim(0);
        let emb = be.empty(&[n, self.time1.in_features]);
        be.sinusoidal_embedding(c_noise, &emb);
        let t1 = self.time1.forward(be, params, &emb);
        let t2 = be.empty(&t1.shape);
        be.silu(&t1, &t2);
        let mut temb = self.time2.forward(be, params, &t2);
        match (&self.label, labels) {
            (Some(label), Some(y)) => {
                assert_eq!(y.shape, [n, self.classes], "one one-hot label row per sample");
                temb = sum(be, &temb, &label.forward(be, params, y));
            }
            (None, None) => {}
            _ => panic!("labels are given exactly to a class-conditional network"),
        }

        let h0 = self.stem.forward(be, params, x);
        let (e28, enc28) = self.enc28.forward(be, params, &h0, &temb);
        let d14 = self.down14.forward(be, params, &e28);
        let (e14, enc14) = self.enc14.forward(be, params, &d14, &temb);
        let d7 = self.down7.forward(be, params, &e14);
        let (e7, enc7) = self.enc7.forward(be, params, &d7, &temb);
        let (m7, mid) = self.mid.forward(be, params, &e7, &temb);

        let (u7, dec7) = self.dec7.forward(be, params, &concat(be, &m7, &e7), &temb);
        let s14 = upsample(be, &u7);
        let v14 = self.up14.forward(be, params, &s14);
        let (u14, dec14) = self.dec14.forward(be, params, &concat(be, &v14, &e14), &temb);
        let s28 = upsample(be, &u14);
        let v28 = self.up28.forward(be, params, &s28);
        let (u28, dec28) = self.dec28.forward(be, params, &concat(be, &v28, &e28), &temb);

        let (head_in, head_stats) = self.head_norm.forward(be, params, &u28);
        let y = self.head.forward(be, params, &head_in);
        let cache = UNetCache {
            x: x.clone(),
            labels: labels.cloned(),
            emb,
            t1,
            t2,
            temb,
            e28,
            e14,
            s14,
            s28,
            u28,
            head_stats,
            head_in,
            enc28,
            enc14,
            enc7,
            mid,
            dec7,
            dec14,
            dec28,
        };
        (y, cache)
    }

    /// Writes the gradient of every parameter into `grads` (same layout as `params`) given the
    /// output gradient `dy`.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        cache: &UNetCache<B>,
        dy: &BTensor<B>,
    ) {
        let [_, c1, c2] = self.widths.0;
        let k = cache;
        let temb = &k.temb;
        let dhead = self.head.backward(be, params, grads, &k.head_in, dy, true).unwrap();
        let du28 = self.head_norm.backward(be, params, grads, &k.u28, &k.head_stats, &dhead);

        // Decoder, undoing each concat: the first channels came up from below, the rest from
        // the encoder's skip connection.
        let (dcat28, mut dtemb) = self.dec28.backward(be, params, grads, temb, &k.dec28, &du28);
        let (dv28, de28_skip) = split(be, &dcat28, c1);
        let ds28 = self.up28.backward(be, params, grads, &k.s28, &dv28, true).unwrap();
        let du14 = upsample_backward(be, &ds28);
        let (dcat14, dt) = self.dec14.backward(be, params, grads, temb, &k.dec14, &du14);
        dtemb = sum(be, &dtemb, &dt);
        let (dv14, de14_skip) = split(be, &dcat14, c2);
        let ds14 = self.up14.backward(be, params, grads, &k.s14, &dv14, true).unwrap();
        let du7 = upsample_backward(be, &ds14);
        let (dcat7, dt) = self.dec7.backward(be, params, grads, temb, &k.dec7, &du7);
        dtemb = sum(be, &dtemb, &dt);
        let (dm7, de7_skip) = split(be, &dcat7, c2);

        // Middle and encoder; each encoder output also fed a skip connection, so its gradient
        // is the sum of both paths.
        let (de7_mid, dt) = self.mid.backward(be, params, grads, temb, &k.mid, &dm7);
        dtemb = sum(be, &dtemb, &dt);
        let (dd7, dt) = self.enc7.backward(be, params, grads, temb, &k.enc7, &sum(be, &de7_mid, &de7_skip));
        dtemb = sum(be, &dtemb, &dt);
        let de14 = self.down7.backward(be, params, grads, &k.e14, &dd7, true).unwrap();
        let (dd14, dt) = self.enc14.backward(be, params, grads, temb, &k.enc14, &sum(be, &de14, &de14_skip));
        dtemb = sum(be, &dtemb, &dt);
        let de28 = self.down14.backward(be, params, grads, &k.e28, &dd14, true).unwrap();
        let (dh0, dt) = self.enc28.backward(be, params, grads, temb, &k.enc28, &sum(be, &de28, &de28_skip));
        dtemb = sum(be, &dtemb, &dt);
        // The input is data: no gradient needed.
        self.stem.backward(be, params, grads, &k.x, &dh0, false);

        if let (Some(label), Some(y)) = (&self.label, &k.labels) {
            // The labels are data: only the embedding's weights get a gradient.
            label.backward(be, params, grads, y, &dtemb, false);
        }
        let dt2 = self.time2.backward(be, params, grads, &k.t2, &dtemb, true).unwrap();
        let dt1 = be.empty(&k.t1.shape);
        be.silu_backward(&k.t1, &dt2, &dt1);
        // The sinusoidal features are a fixed function of the noise level: no gradient needed.
        self.time1.backward(be, params, grads, &k.emb, &dt1, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_reference() {
        // docs/paper.md#the-reference-network: small 175,761; base 698,657.
        assert_eq!(UNet::new(Widths::SMALL).layout.count(), 175_761);
        assert_eq!(UNet::new(Widths::BASE).layout.count(), 698_657);
    }

    #[test]
    fn the_label_embedding_comes_last() {
        let (plain, conditional) = (UNet::new(Widths::SMALL), UNet::with_classes(Widths::SMALL, 10));
        // A 10 x 64 weight and a 64 bias.
        assert_eq!(conditional.layout.count(), plain.layout.count() + 10 * 64 + 64);
        for (a, b) in plain.layout.params.iter().zip(&conditional.layout.params) {
            assert_eq!((&a.name, a.offset), (&b.name, b.offset));
        }
    }

    #[test]
    fn widths_parse() {
        assert_eq!(Widths::parse("tiny").unwrap(), Widths::TINY);
        assert_eq!(Widths::parse("24, 48,48").unwrap(), Widths([24, 48, 48]));
        assert!(Widths::parse("16,30,32").is_err());
        assert!(Widths::parse("huge").is_err());
    }
}
