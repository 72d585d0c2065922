#!/usr/bin/env bash
# Writes tests/data/text/persuasion-end.txt: the last 20,000 characters of Jane Austen's
# "Persuasion" (public domain), from Debian's r-cran-janeaustenr (MIT). This lies inside the 5% of
# the text tools/train_default_model.py holds out, so the default model never trained on it.
#   apt-get install r-cran-janeaustenr && tools/extract_heldout_text.sh
set -euo pipefail
cd "$(dirname "$0")/.."
Rscript -e 'library(janeaustenr); t <- paste(persuasion, collapse="\n"); n <- nchar(t);
  cat(substr(t, n - 19999, n), file="tests/data/text/persuasion-end.txt")'
