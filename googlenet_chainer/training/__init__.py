"""What only train_googlenet.py uses, in the order a run needs it.

    options        a resumed run's recorded options; what may change
    plan           plan_run: what rank 0 settles before a run (checks, data,
                   run.json, the snapshot to resume, disk space)
    run_folder     --out: held by one run, a new run or one resumed, what a
                   killed run left behind
    data           the run's images read, checked, split and reported;
                   the image datasets
    sampling       draws by seed, epoch and index (SeededOrder, Shard)
    loader         images decoded in worker processes that may die
    row_cache      a float32 array on disk, filled in blocks, resumable
    views          the views of each image the feature cache keeps
    feature_cache  the frozen part's outputs at the cut, computed once per
                   image and view
    snapshots      written small, kept few, checked before a resume
    optimizers     the optimizer and the learning-rate schedule
    extensions     the run's Chainer extensions
    trainer        the datasets, optimizer, updater and Trainer of a run
    final_report   the best model scored on the validation set

googlenet_chainer.LAYERS orders these with the rest of the library.
"""
