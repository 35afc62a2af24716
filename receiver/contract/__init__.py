"""What crosses from the receiver to the pipeline, defined once.

- `record`: the log record: every top-level member and every `fields` key by kind, with its
  type and meaning, and the builders the receiver writes records with (`record_doc` renders
  docs/log-format.md's tables from it);
- `framing`: how records sit in DATA/log/segment-NNNNNNNN.ndjson (a CRC-32 per line) and
  how to read them back;
- `params`: the parameter vocabulary (names, statuses, macros, dialects) and how a request's
  parameters are read;
- `codes`: the error codes the receiver answers, and their HTTP statuses;
- `config`, `config_file`, `toml_lines`, `addresses`: the config model, reading and
  validating DATA/config.toml, and the IP helpers the model uses;
- `profiles` (and the `presets` data files): partner profiles, how a platform's postback is
  read, checked and answered, and `status_for`, the status mapping both sides apply;
- `timeutil`: UTC timestamps as records hold them;
- `datadir`: `DataDir`, every path under a data directory;
- `files`: a directory's fsync and the one-writer lock.

The pipeline imports nothing of the receiver but this package, and this package imports
nothing else of the receiver.
"""
