"""Export stage (extra `export`): train the models on a data set and write a bundle for the runtime."""
