"""Demo datasets made for the project, registered in dataset_info.json."""
