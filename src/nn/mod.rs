//! Layers with hand-written backward passes, and the reference U-Net.
