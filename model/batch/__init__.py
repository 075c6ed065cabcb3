"""A local reproduction of SageMaker Batch Transform around the real ``serve`` process.

Standard library only (tqdm is optional, for the progress bar), so importing it is
cheap and the same runner works wherever the project's serving code runs.

- ``params``: job parameters under SageMaker's names, validated like the API does;
- ``records``: splitting a file into mini-batches (SplitType, BatchStrategy, MaxPayloadInMB);
- ``client``: POST /invocations with InvocationsMaxRetries / InvocationsTimeoutInSeconds;
- ``assembly``: AssembleWith, JoinSource, OutputFilter and atomic ``.out`` files;
- ``inputs``: the input files (Parquet / NPY recognised) and the output directory;
- ``runner``: MaxConcurrentTransforms requests in flight over a directory of inputs;
- ``explain``: one line naming the failed record (bisection) or batch;
- ``server``: starting, checking and always stopping ``serve`` on a loopback port;
- ``health``: the watch that stops a run at once when ``serve`` dies or hangs;
- ``local``: the whole job, archive in, ``.out`` files out (``run_local_transform``);
- ``cli``: the shared command-line options; ``progress``: the tqdm bar and start-up ticker.

Submodules are imported where used (nothing here), so ``--help`` stays instant.
"""
