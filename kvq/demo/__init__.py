"""The demo dataset: build.py (layout, `build_dataset`), plan.py (parameters, the seeded plan, MOS
mapping), sources.py (source clips), processing.py (processed versions), annotations.py (annotation
files, rank pairs) and ffmpeg.py (the bundled ffmpeg, `make_clip`: the one clip maker, VMAF)."""
