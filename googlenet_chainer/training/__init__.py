"""What only train_googlenet.py uses, in the order a run needs it.

    run_folder     --out: plan_run (checks, data, run.json, the snapshot to
                   resume, disk space), what a killed run left behind
    options        a resumed run's recorded options; what may change
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
