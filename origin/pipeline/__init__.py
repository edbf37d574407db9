"""The encode pipeline's orchestration: stages as queue jobs, and the worker that runs them.

A title moves through the catalog's job queue stage by stage; each stage is a job kind, and
the job that finishes a stage enqueues the next in the same transaction as its completion::

    probe -> analyse -> encode_chunk x rung (+ encode_audio)  -> package -> publish -> notify
    PENDING  SEGMENTED  TRANSCODING (any worker, any order;      READY      (webhook)
                                     the last one enqueues package)

- :mod:`.start`     the first job, enqueued by the upload API (``first_jobs``)
- :mod:`.jobs`      job kinds, payload and result shapes, what each stage enqueues (pure)
- :mod:`.errors`    what a stage's exception means for its job (:func:`~.errors.classify`)
- :mod:`.stage`     what a stage gets (:class:`~.stage.Context`) and returns (``Done``)
- :mod:`.workdir`   intermediate files under ``pipeline.work_dir``; write-then-rename
- :mod:`.probe`, :mod:`.analyse`, :mod:`.encode`, :mod:`.package`, :mod:`.publish`,
  :mod:`.notify`    the stages (thin drivers of :mod:`origin.media`)
- :mod:`.webhook`   the READY notification's HTTP delivery with bounded retries
- :mod:`.worker`    the process: slots, leases, shutdown; ``main(cfg, once=…)``
"""
