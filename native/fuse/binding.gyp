# Prism's FUSE binding (see prism_fuse.c). Built by scripts/build-fuse.mjs only when
# `pkg-config fuse3` finds libfuse3's development files; Prism works without it.
{
  "targets": [
    {
      "target_name": "prism_fuse",
      "sources": ["prism_fuse.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
