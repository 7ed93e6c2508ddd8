//! The TPS-licensing RADIUS proxy (being written).
