//! The models: ASNA and its surrogate ranking network, their parameters and the loss.

pub mod asna;
pub mod checkpoint;
pub mod layers;
pub mod loss;
pub mod params;
pub mod sorter;
pub mod weights;
