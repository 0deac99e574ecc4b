//! The `cm` command line end to end on the CPU backend and the real MNIST files: train, resume,
//! sample (PNG and .npy), eval, and the refusals a user can run into.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cm")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("run cm")
}

#[track_caller]
fn succeeds(args: &[&str]) -> String {
    let out = cm(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cm {args:?} failed:\n{text}");
    text
}

#[track_caller]
fn fails_with(args: &[&str], expected: &str) {
    let out = cm(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cm {args:?} should fail");
    assert!(stderr.contains(expected), "cm {args:?}: '{stderr}' should mention '{expected}'");
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn train_resume_sample_and_eval_from_the_command_line() {
    let dir = scratch("cli-run");
    let out = dir.join("tiny.safetensors");
    let out = out.to_str().unwrap();
    let train = ["train", "--config", "tiny", "--batch", "4", "--backend", "cpu", "--loss-every", "2", "--out", out];

    let log = succeeds(&[&train[..], &["--steps", "4"]].concat());
    assert!(log.contains("improved CT s0=10 s1=160 K=4"), "{log}");
    assert!(log.contains("step 4/4 loss"), "{log}");
    fails_with(&[&train[..], &["--steps", "6"]].concat(), "exists: pass --resume");
    let log = succeeds(&[&train[..], &["--steps", "6", "--resume"]].concat());
    assert!(log.contains("resuming") && log.contains("at step 4") && log.contains("step 6/6"), "{log}");
    let csv = std::fs::read_to_string(dir.join("tiny.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| !l.starts_with("step")).count(), 3, "{csv}");

    let png = dir.join("s.png");
    let npy = dir.join("s.npy");
    let (png_s, npy_s) = (png.to_str().unwrap(), npy.to_str().unwrap());
    succeeds(
        &["sample", "--checkpoint", out, "--count", "5", "--time-points", "0.8", "--backend", "cpu"]
            .iter()
            .chain(&["--out", png_s, "--npy", npy_s])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let npy = std::fs::read(&npy).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&npy[..128]);
    assert!(header.contains("'shape': (5, 1, 28, 28") && header.contains("<f4"), "{header}");
    assert!(npy.len() >= 5 * 784 * 4);
    // --clamp keeps the .npy in the digits' range [-1, 1], as the PNG is.
    succeeds(&[
        "sample",
        "--checkpoint",
        out,
        "--count",
        "5",
        "--backend",
        "cpu",
        "--out",
        png_s,
        "--npy",
        npy_s,
        "--clamp",
    ]);
    let npy = std::fs::read(dir.join("s.npy")).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let values: Vec<f32> =
        npy[10 + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values.len(), 5 * 784);
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));

    let report = succeeds(&["eval", "--checkpoint", out, "--count", "50", "--backend", "cpu", "--markdown", "t"]);
    assert!(
        report.contains("1 step") && report.contains("2 steps (80, 0.8)") && report.contains("class entropy"),
        "{report}"
    );
    assert!(report.lines().any(|l| l.starts_with("| t | 6 |")), "{report}");
    // Legibility beside the FID: the share read with p >= 0.9 and each digit's share.
    assert!(report.contains("legible") && report.contains("shares % 0:"), "{report}");

    // `cm eval --csv`: a header and a row per sampler, with legibility and the ten shares; a
    // file of another header is refused rather than appended to.
    let csv = dir.join("eval.csv");
    let csv_s = csv.to_str().unwrap();
    succeeds(&["eval", "--checkpoint", out, "--count", "20", "--backend", "cpu", "--markdown", "t", "--csv", csv_s]);
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines[0], "label,sampler,evaluations,fid,legible,class_entropy,shares,count,seconds", "{rows}");
    assert_eq!(lines.len(), 3, "{rows}");
    let fields: Vec<&str> = lines[1].split(',').collect();
    let legible: f64 = fields[4].parse().unwrap();
    assert!((0.0..=1.0).contains(&legible), "{rows}");
    let shares: Vec<f64> = fields[6].split(';').map(|s| s.parse().unwrap()).collect();
    assert_eq!(shares.len(), 10, "{rows}");
    assert!((shares.iter().sum::<f64>() - 100.0).abs() < 0.1, "{rows}");
    let other = dir.join("other.csv");
    std::fs::write(&other, "label,sampler,evaluations,fid,class_entropy,count,seconds\n").unwrap();
    fails_with(
        &["eval", "--checkpoint", out, "--count", "20", "--backend", "cpu", "--csv", other.to_str().unwrap()],
        "not a `cm eval --csv` file of this version",
    );

    // A segment of a longer run: --max-minutes 0 stops after one step with a checkpoint, far
    // short of --steps, and `cm info --checkpoint` reads the step back.
    let log = succeeds(&[&train[..], &["--steps", "100", "--resume", "--max-minutes", "0"]].concat());
    assert!(log.contains("step 7 of 100"), "{log}");
    assert!(succeeds(&["info", "--checkpoint", out]).contains(": step 7, Widths([8, 16, 16])"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = scratch("cli-bad");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let junk = junk.to_str().unwrap();
    fails_with(&["sample", "--checkpoint", junk, "--backend", "cpu"], "not a safetensors file");
    fails_with(
        &["sample", "--checkpoint", "/nonexistent/x.safetensors", "--backend", "cpu"],
        "/nonexistent/x.safetensors",
    );
    fails_with(&["train", "--config", "9,9,9", "--backend", "cpu", "--out", junk], "exists");
    let fresh = dir.join("fresh.safetensors");
    fails_with(
        &["train", "--config", "9,9,9", "--backend", "cpu", "--out", fresh.to_str().unwrap()],
        "width config '9,9,9'",
    );
    fails_with(
        &["train", "--data", "/nonexistent", "--backend", "cpu", "--out", fresh.to_str().unwrap()],
        "/nonexistent",
    );
    fails_with(
        &["train", "--resume", "--backend", "cpu", "--out", fresh.to_str().unwrap()],
        "does not exist, so there is no run to continue",
    );
    fails_with(&["train", "--s0", "5", "--s1", "2", "--backend", "cpu", "--out", fresh.to_str().unwrap()], "s0 <= s1");
}

/// The diffusion teacher from the command line: trained by `--recipe teacher`, sampled by its ODE
/// solver, measured by `eval --ode`, and refused what only consistency models take.
#[test]
fn a_teacher_trains_samples_by_its_solver_evaluates_and_is_distilled() {
    let dir = scratch("cli-teacher");
    let out = dir.join("teacher.safetensors");
    let out = out.to_str().unwrap();
    let text = succeeds(&[
        "train",
        "--recipe",
        "teacher",
        "--config",
        "tiny",
        "--steps",
        "4",
        "--batch",
        "4",
        "--backend",
        "cpu",
        "--out",
        out,
    ]);
    assert!(text.contains("EDM teacher"), "{text}");
    let png = dir.join("teacher.png");
    let text = succeeds(&[
        "sample",
        "--checkpoint",
        out,
        "--count",
        "4",
        "--solver",
        "euler",
        "--steps",
        "3",
        "--backend",
        "cpu",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(text.contains("euler, 3 steps (3 evaluations)"), "{text}");
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
    let text = succeeds(&["eval", "--checkpoint", out, "--count", "20", "--ode", "heun:2,euler:3", "--backend", "cpu"]);
    assert!(
        text.contains("heun, 2 steps (3 evaluations)") && text.contains("euler, 3 steps (3 evaluations)"),
        "{text}"
    );
    // Distilled from that teacher (Algorithm 2), the student samples in one step.
    let student = dir.join("student.safetensors");
    let student = student.to_str().unwrap();
    let distill =
        ["train", "--recipe", "distill", "--teacher", out, "--solver", "euler", "--steps", "3", "--batch", "4"];
    let text = succeeds(&[&distill[..], &["--backend", "cpu", "--out", student]].concat());
    assert!(text.contains("consistency distillation (euler teacher steps, N=18, mu=0.95)"), "{text}");
    let text = succeeds(&[
        "sample",
        "--checkpoint",
        student,
        "--count",
        "4",
        "--backend",
        "cpu",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(text.contains("4 samples, 1 step"), "{text}");
    let elsewhere = dir.join("y.safetensors");
    let elsewhere = elsewhere.to_str().unwrap();
    fails_with(&["train", "--recipe", "distill", "--backend", "cpu", "--out", elsewhere], "start from --teacher");

    // Progressive distillation (stages of 2 steps: students of 8, 4, 2 and 1 Euler steps) and
    // consistency tuning with the perceptual distance, from the same teacher, with FID logs.
    let pd = dir.join("pd.safetensors");
    let pd = pd.to_str().unwrap();
    let text = succeeds(&[
        "train",
        "--recipe",
        "progressive",
        "--teacher",
        out,
        "--steps",
        "8",
        "--batch",
        "4",
        "--backend",
        "cpu",
        "--out",
        pd,
        "--fid-every",
        "4",
        "--fid-count",
        "20",
        "--loss-every",
        "2",
    ]);
    assert!(text.contains("progressive distillation (from 16 Euler steps, 2 steps a stage)"), "{text}");
    let log = std::fs::read_to_string(dir.join("pd.csv")).unwrap();
    let students: Vec<&str> = log.lines().skip(1).map(|l| l.split(',').nth(2).unwrap()).collect();
    assert_eq!(students, ["8", "4", "2", "1"], "the student halves its steps every stage: {log}");
    let fid = std::fs::read_to_string(dir.join("pd.fid.csv")).unwrap();
    assert!(fid.starts_with("step,fid,legible,evaluations\n4,") && fid.lines().count() == 3, "{fid}");
    let text = succeeds(&["eval", "--checkpoint", pd, "--count", "20", "--ode", "euler:1", "--backend", "cpu"]);
    assert!(text.contains("euler, 1 steps (1 evaluations)"), "{text}");
    let ect = dir.join("ect.safetensors");
    let ect = ect.to_str().unwrap();
    let text = succeeds(&[
        "train",
        "--recipe",
        "tuning",
        "--loss",
        "perceptual",
        "--teacher",
        out,
        "--steps",
        "2",
        "--batch",
        "2",
        "--backend",
        "cpu",
        "--out",
        ect,
    ]);
    assert!(
        text.contains("consistency tuning (q=2, 1 steps a stage) loss=perceptual") && text.contains("lr=0.0002"),
        "{text}"
    );
    let text =
        succeeds(&["sample", "--checkpoint", ect, "--count", "4", "--backend", "cpu", "--out", png.to_str().unwrap()]);
    assert!(text.contains("4 samples, 1 step"), "{text}");
    fails_with(
        &["train", "--recipe", "progressive", "--teacher", out, "--loss", "l1", "--backend", "cpu", "--out", elsewhere],
        "no loss, s0 or s1 to set",
    );
    fails_with(&["train", "--recipe", "tuning", "--backend", "cpu", "--out", elsewhere], "start from --teacher");
    // A tuned run holds no teacher to distill from (a distilled run carries one, and serves).
    fails_with(
        &["train", "--recipe", "distill", "--teacher", ect, "--backend", "cpu", "--out", elsewhere],
        "needs a diffusion teacher",
    );

    // cm plot draws the figures of a small fixed log.
    let figures = dir.join("figures");
    let text = succeeds(&["plot", "--data", "tests/fixtures/figures", "--out", figures.to_str().unwrap()]);
    assert!(text.contains("a-cd-distance.png") && text.contains("| PD (1-step student) |"), "{text}");
    assert!(figures.join("d-fid-vs-evaluations.png").metadata().unwrap().len() > 10_000);
    fails_with(
        &["sample", "--checkpoint", out, "--time-points", "0.8", "--backend", "cpu", "--out", png.to_str().unwrap()],
        "ODE solver",
    );
    fails_with(
        &["sample", "--checkpoint", out, "--solver", "rk4", "--backend", "cpu", "--out", png.to_str().unwrap()],
        "unknown ODE solver",
    );
    fails_with(
        &[
            "train",
            "--recipe",
            "teacher",
            "--loss",
            "l1",
            "--config",
            "tiny",
            "--backend",
            "cpu",
            "--out",
            dir.join("x.safetensors").to_str().unwrap(),
        ],
        "no loss",
    );
}

/// Class-conditional models from the command line: a conditional teacher started from an
/// unconditional one (`--init`), distilled into a conditional student, both sampled with
/// `--digit`, evaluated with the label agreement and `--time-points` groups; and the
/// refusals.
#[test]
fn conditional_models_train_from_an_unconditional_start_and_sample_a_digit() {
    let dir = scratch("cli-conditional");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (plain, teacher, student, png) =
        (path("plain.safetensors"), path("teacher.safetensors"), path("student.safetensors"), path("x.png"));
    let tiny = ["--config", "tiny", "--batch", "4", "--backend", "cpu"];
    succeeds(&[&["train", "--recipe", "teacher", "--steps", "2", "--out", &plain][..], &tiny].concat());
    let text = succeeds(
        &[
            &["train", "--recipe", "teacher", "--conditional", "--init", &plain, "--steps", "2"][..],
            &tiny,
            &["--out", &teacher],
        ]
        .concat(),
    );
    // Every parameter of the unconditional network but the label embedding's two.
    assert!(text.contains(&format!("started from {plain}")), "{text}");
    let text = succeeds(&[
        "sample",
        "--checkpoint",
        &teacher,
        "--digit",
        "7",
        "--steps",
        "2",
        "--count",
        "3",
        "--backend",
        "cpu",
        "--out",
        &png,
    ]);
    assert!(text.contains("3 samples of digit 7"), "{text}");
    let text = succeeds(
        &[
            &[
                "train",
                "--recipe",
                "distill",
                "--teacher",
                &teacher,
                "--steps",
                "2",
                "--batch",
                "4",
                "--backend",
                "cpu",
            ][..],
            &["--out", &student],
        ]
        .concat(),
    );
    assert!(text.contains("consistency distillation"), "{text}");
    let text = succeeds(&[
        "sample",
        "--checkpoint",
        &student,
        "--digit",
        "3",
        "--count",
        "2",
        "--backend",
        "cpu",
        "--out",
        &png,
    ]);
    assert!(text.contains("2 samples of digit 3, 1 step"), "{text}");
    let text = succeeds(&[
        "eval",
        "--checkpoint",
        &student,
        "--count",
        "20",
        "--time-points",
        ";0.8;5,0.8,0.2",
        "--backend",
        "cpu",
    ]);
    for expected in ["1 step", "2 steps (80, 0.8)", "4 steps (80, 5, 0.8, 0.2)", "the classifier agrees on"] {
        assert!(text.contains(expected), "no '{expected}' in {text}");
    }

    fails_with(&["sample", "--checkpoint", &plain, "--digit", "3", "--backend", "cpu", "--out", &png], "unconditional");
    fails_with(
        &["sample", "--checkpoint", &teacher, "--digit", "12", "--backend", "cpu", "--out", &png],
        "not one of the model's 10",
    );
    let other = path("other.safetensors");
    fails_with(
        &[&["train", "--recipe", "teacher", "--label-dropout", "0.2"][..], &tiny, &["--out", &other]].concat(),
        "for a --conditional network",
    );
    fails_with(
        &[&["train", "--recipe", "teacher", "--conditional", "--label-dropout", "1.5"][..], &tiny, &["--out", &other]]
            .concat(),
        "probability",
    );
    fails_with(
        &[&["train", "--recipe", "distill", "--teacher", &teacher, "--conditional"][..], &tiny, &["--out", &other]]
            .concat(),
        "drop --conditional",
    );
    fails_with(
        &[
            &["train", "--recipe", "teacher", "--init", &plain, "--config", "small"][..],
            &["--backend", "cpu", "--out", &other],
        ]
        .concat(),
        "has widths",
    );
}
