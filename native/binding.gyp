# prism_sys: the few system calls Node does not offer (src/sys.ts is its only user).
{
  "targets": [
    {
      "target_name": "prism_sys",
      "sources": ["sys.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "libraries": ["-lpthread"]
    }
  ]
}
