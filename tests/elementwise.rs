//! Elementwise and data-movement kernels against their CPU twins (and finite differences for
//! the backward kernels).

mod common;

use common::*;
use consistency::backend::Backend;

#[test]
fn add_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for &len in &[1usize, 7, 256, 1000, 70_001] {
        let a = random_vec(len, 1);
        let b = random_vec(len, 2);
        let (ga, gb, go) = (g.upload(&a, &[len]), g.upload(&b, &[len]), g.zeros(&[len]));
        g.add(&ga, &gb, &go);
        let (ca, cb, co) = (c.upload(&a, &[len]), c.upload(&b, &[len]), c.zeros(&[len]));
        c.add(&ca, &cb, &co);
        assert_close("add", &read(&g, &go), &read(&c, &co), 0.0, 0.0);
    }
}
