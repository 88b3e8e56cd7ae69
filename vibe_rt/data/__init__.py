"""Datasets: the simulator (paradigms, categories), THINGS-EEG2/THINGS-MEG loaders, recordings, background noise,
noise ceiling."""

from __future__ import annotations

from .categories import CategoryLabel
from .ceiling import encoding_correlation, noise_ceiling
from .dataset import EpochsDataset
from .noise import BackgroundNoise
from .paradigm import PARADIGMS, Paradigm
from .recordings import Recording, load_recording, read_recording, read_stimulus_log
from .simulate import EvokedModel, SimulationConfig, contrast_maps, load_simulated, simulate_dataset
from .things import load_things_eeg2, load_things_meg, read_things_eeg2

__all__ = [
    "PARADIGMS",
    "BackgroundNoise",
    "CategoryLabel",
    "EpochsDataset",
    "EvokedModel",
    "Paradigm",
    "Recording",
    "SimulationConfig",
    "contrast_maps",
    "encoding_correlation",
    "load_recording",
    "load_simulated",
    "load_things_eeg2",
    "load_things_meg",
    "noise_ceiling",
    "read_recording",
    "read_stimulus_log",
    "read_things_eeg2",
    "simulate_dataset",
]
