//! The perceptual distance of section 9 (LPIPS on a digit network): zero on equal images,
//! positive otherwise, symmetric, the same on both backends, and its gradient to the first
//! image against finite differences.

mod common;

use common::*;
use consistency::backend::Backend;
use consistency::eval::classifier::to_model_range;
use consistency::nn::classifier::Architecture;
use consistency::perceptual::Perceptual;

/// Four real test digits in [-1, 1] and a noisy copy of each.
fn digits() -> (Vec<f32>, Vec<f32>) {
    let test = consistency::data::mnist::Mnist::load_split("data/mnist", consistency::data::mnist::Split::Test)
        .expect("MNIST in data/mnist (scripts/fetch-mnist)");
    let x = to_model_range(&test.images[..4 * 784]);
    let y = x.iter().zip(random_vec(x.len(), 3)).map(|(a, n)| (a + 0.3 * n).clamp(-1.0, 1.0)).collect();
    (x, y)
}

fn distances<B: Backend>(be: &B, net: &Perceptual<B>, x: &[f32], y: &[f32], weight: &[f32]) -> Vec<f32> {
    let shape = [weight.len(), 1, 28, 28];
    let (d, _) = net.distance(be, &be.upload(x, &shape), &be.upload(y, &shape), weight);
    read(be, &d)
}

#[test]
fn perceptual_network_differs_from_the_fid_network() {
    assert_ne!(Architecture::PERCEPTUAL.name, Architecture::FID.name);
    assert_ne!(Architecture::PERCEPTUAL.stages, Architecture::FID.stages);
}

#[test]
fn distance_is_zero_on_equal_images_positive_otherwise_and_matches_on_both_backends() {
    let (x, y) = digits();
    let (c, g) = (cpu(), gpu());
    let (net_c, net_g) = (Perceptual::shipped(&c).unwrap(), Perceptual::shipped(&g).unwrap());
    let ones = [1.0; 4];
    assert_eq!(distances(&c, &net_c, &x, &x, &ones), [0.0; 4], "d(x, x) = 0 exactly");
    assert_eq!(distances(&g, &net_g, &x, &x, &ones), [0.0; 4], "d(x, x) = 0 exactly on the GPU");
    let d = distances(&c, &net_c, &x, &y, &ones);
    assert!(d.iter().all(|&v| v > 0.01), "noisy copies are at a positive distance: {d:?}");
    // Symmetric, and weighted per sample.
    assert_close("symmetry", &distances(&c, &net_c, &y, &x, &ones), &d, 1e-4, 1e-6);
    let weighted = distances(&c, &net_c, &x, &y, &[2.0, 0.5, 1.0, 0.0]);
    assert_close("weights", &weighted, &[2.0 * d[0], 0.5 * d[1], d[2], 0.0], 1e-5, 1e-7);
    // Two different digits are further apart than a digit and its lightly noised copy.
    let light: Vec<f32> = x.iter().zip(random_vec(x.len(), 4)).map(|(a, n)| a + 0.05 * n).collect();
    let near = distances(&c, &net_c, &x, &light, &ones);
    let mut shifted = x[784..].to_vec();
    shifted.extend_from_slice(&x[..784]);
    let far = distances(&c, &net_c, &x, &shifted, &ones);
    assert!(near.iter().zip(&far).all(|(n, f)| n < f), "near {near:?} vs other digits {far:?}");
    assert_close("GPU = CPU", &distances(&g, &net_g, &x, &y, &ones), &d, 1e-3, 1e-6);
}

/// Probes `probes` pixels (each costs two forward passes: fewer on the emulated GPU).
fn gradient_check<B: Backend>(be: &B, probes: usize) {
    let (x, y) = digits();
    let net = Perceptual::shipped(be).unwrap();
    let weight = [1.0, 0.5, 2.0, 1.0];
    let shape = [4, 1, 28, 28];
    let (_, cache) = net.distance(be, &be.upload(&x, &shape), &be.upload(&y, &shape), &weight);
    let grad = read(be, &net.backward(be, &cache));
    // backward is the gradient of mean_n loss[n]: the cotangent 1/N on each sample's loss.
    check_gradient(
        "perceptual d/dpred",
        &mut |v| distances(be, &net, v, &y, &weight),
        &x,
        &[0.25; 4],
        &grad,
        1e-2,
        2e-2,
        probes,
    );
}

#[test]
fn distance_gradient_matches_finite_differences_cpu() {
    gradient_check(&cpu(), 120);
}

#[test]
fn distance_gradient_matches_finite_differences_gpu() {
    gradient_check(&gpu(), 16);
}
