"""The media side of the encode pipeline: probe, plan, encode, package, thumbnails.

Each module keeps its decisions in pure functions (argv builders, planners, parsers) and wraps
the tools in thin async functions that run one subprocess each through :func:`tools.run`:

- :mod:`.tools`       finding ffmpeg/ffprobe/packager; ``run(argv, step=…, timeout=…)``
- :mod:`.probe`       ffprobe -> :class:`~.probe.ProbeResult`; ``validate`` / ``inspect``
- :mod:`.complexity`  quick constant-quality probe encodes -> a complexity figure (kbps)
- :mod:`.ladder`      the reference ladder and the per-title ``plan_ladder``
- :mod:`.chunks`      output cadence, GOP-aligned chunks, chunk/audio encodes, concatenation
- :mod:`.package`     Shaka Packager -> CMAF HLS + DASH; measured BANDWIDTH in the master
- :mod:`.thumbs`      poster, sprite sheets and their WebVTT track
- :mod:`.tracks`      languages and text subtitle tracks of an upload; subtitles -> WebVTT

A job for one title runs: ``inspect`` -> ``measure_complexity`` -> ``plan_ladder`` ->
``plan_chunks`` -> ``encode_chunks`` for every chunk (its rungs from one decode; any worker,
any order) and
``encode_audio`` once -> ``concat_chunks`` per rung -> ``package`` -> ``fix_master_bandwidths``
-> ``make_thumbnails``. Nothing here publishes: callers package into a staging directory and
rename it into place.

Errors::

    MediaError      a tool failed, timed out or wrote output that fails a check;
                    .step, .returncode (None: timed out or a check failed), .stderr_tail.
                    Worth a retry (another worker, another time) up to the job's maximum.
    ProbeRejected   the upload is not a usable video; .reason is for the creator. No retry.
                    (chunks.TooShort: no whole frame, or less than one AAC frame, to encode.)
    ToolNotFound    (.tools) the binaries are not installed for this platform.

Every async function here can run on any event loop, including ``asyncio.run`` inside a worker
thread; cancelling one kills its child process and waits for it before re-raising.
"""
