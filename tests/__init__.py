"""mamoru's test suite: real models, real face images, real files."""
