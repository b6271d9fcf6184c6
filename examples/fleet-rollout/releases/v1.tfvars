# v1: the baseline every store converges to first.
