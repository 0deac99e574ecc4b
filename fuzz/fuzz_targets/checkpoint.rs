//! Arbitrary bytes into the checkpoint loader: it may refuse them, never panic, and whatever it
//! accepts must write back to bytes that load to the same checkpoint.

#![no_main]

use consistency::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes) {
        let again = Checkpoint::from_bytes(&checkpoint.to_bytes().expect("a loaded checkpoint writes")).expect("reloads");
        assert_eq!(again, checkpoint);
    }
});
