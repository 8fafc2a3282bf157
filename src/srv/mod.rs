//! Inferno's srv device: channel-backed files served over 9P2000.

pub mod fcall;
