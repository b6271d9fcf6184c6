# The pinned nixpkgs lib (<nixpkgs-lib>), loaded so that the Nix these machines have (Debian's
# 2.8) can run it: nixpkgs lib calls `builtins.readFileType` (Nix 2.14) in lib.filesystem and
# lib.fileset. Every file of the lib is imported with a `builtins` that adds it, answered from
# `builtins.readDir` of the parent directory (same values: "regular", "directory", "symlink",
# "unknown"). Nothing else of the lib is changed.
let
  builtins' = builtins // {
    readFileType = builtins.readFileType or (p: (builtins.readDir (dirOf p)).${baseNameOf p});
  };
  scope = {
    builtins = builtins';
    import = scopedImport scope;
  };
in
scopedImport scope <nixpkgs-lib/lib>
