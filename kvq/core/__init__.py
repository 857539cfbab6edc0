"""Floor 1: what models/, datasets/ and the jobs above stand on (registry, io, checkpoint, weights,
config machinery, errors, devices, process groups). Imports nothing from models/, datasets/ or the
rest of kvq/."""
