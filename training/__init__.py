"""What training needs beside fkd/: the calibration fit and the pictures of a training run."""
