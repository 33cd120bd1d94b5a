"""Output plumbing, apart from the steps of the flow: the names of the files a run writes (one
place), who owns what in an output folder and the one-writer lock."""
