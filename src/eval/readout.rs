//! Legibility as a run goes: what the classifier reads in a batch of samples ([`Reading`]), and
//! the readings taken along a run ([`Readout`]), kept in its file so that a downloaded run
//! carries the curve a person watched.
//!
//! The page takes a reading with each preview (a few hundred one-step samples of the sampling
//! EMA): the share read with p >= [`super::LEGIBLE_PROBABILITY`] and each digit's share. Unlike the
//! consistency-training loss, which is no progress measure (its target moves with the
//! curriculum), these numbers rise as the digits become readable.

use super::{class_histogram, legible_share, Classified};
use crate::data::mnist::CLASSES;
use crate::{Error, Result};

/// What the classifier reads in a batch of digits.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The most likely digit of each image.
    pub classes: Vec<u8>,
    /// The share (0 to 1) read with probability >= [`super::LEGIBLE_PROBABILITY`].
    pub legible: f64,
    /// Each digit's share of the batch, in percent.
    pub shares: [f64; CLASSES],
}

impl Reading {
    pub fn new(classified: &Classified) -> Reading {
        Reading {
            classes: classified.classes.clone(),
            legible: legible_share(&classified.confidence),
            shares: shares(&class_histogram(&classified.classes)),
        }
    }
}

/// Each digit's share of a histogram, in percent (zeros for an empty one).
pub fn shares(histogram: &[usize; CLASSES]) -> [f64; CLASSES] {
    let total = histogram.iter().sum::<usize>().max(1) as f64;
    histogram.map(|c| 100.0 * c as f64 / total)
}

/// One reading taken during a run: at `step`, `count` one-step samples of the sampling EMA.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Serialize))]
pub struct Readout {
    pub step: u32,
    pub count: usize,
    /// The share (0 to 1) read with probability >= [`super::LEGIBLE_PROBABILITY`].
    pub legible: f64,
    /// Each digit's share, in percent.
    pub shares: [f64; CLASSES],
}

impl Readout {
    pub fn new(step: u32, reading: &Reading) -> Readout {
        Readout { step, count: reading.classes.len(), legible: reading.legible, shares: reading.shares }
    }

    /// The readings as one line of text (a checkpoint's metadata entry): `step count legible
    /// share0 .. share9` per reading, readings separated by ';'.
    pub fn to_text(readouts: &[Readout]) -> String {
        readouts
            .iter()
            .map(|r| {
                // Shortest exact decimals, so a file reads back to the same readings.
                let shares: Vec<String> = r.shares.iter().map(f64::to_string).collect();
                format!("{} {} {} {}", r.step, r.count, r.legible, shares.join(" "))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Reads [`Readout::to_text`]'s line back; a malformed entry is an error naming it.
    pub fn parse(text: &str) -> Result<Vec<Readout>> {
        text.split(';').filter(|entry| !entry.trim().is_empty()).map(Readout::parse_one).collect()
    }

    fn parse_one(entry: &str) -> Result<Readout> {
        let bad = || Error::Invalid(format!("legibility reading '{entry}' is not 'step count legible' and ten shares"));
        let fields: Vec<&str> = entry.split_whitespace().collect();
        if fields.len() != 3 + CLASSES {
            return Err(bad());
        }
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(bad);
        let mut shares = [0.0; CLASSES];
        for (share, field) in shares.iter_mut().zip(&fields[3..]) {
            *share = number(field)?;
        }
        let legible = number(fields[2])?;
        if legible > 1.0 {
            return Err(bad());
        }
        Ok(Readout {
            step: fields[0].parse().map_err(|_| bad())?,
            count: fields[1].parse().map_err(|_| bad())?,
            legible,
            shares,
        })
    }
}
