//! Models trained elsewhere, as asna checkpoints: the authors' Keras 2 HDF5 files.

pub mod hdf5;
pub mod keras;
pub mod keras_graph;
mod keras_match;
