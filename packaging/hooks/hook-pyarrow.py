"""pyarrow, without what datasets never touches: Flight (RPC), the cloud file systems, the C++ test module.

Replaces the contrib hook, which collects every submodule and every library in the wheel (about 55 MB more).
The libraries the kept extension modules link are still found by PyInstaller's binary analysis.
"""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

UNUSED = ("pyarrow.flight", "pyarrow._flight", "pyarrow._s3fs", "pyarrow._gcsfs", "pyarrow._azurefs",
          "pyarrow._hdfs", "pyarrow.cuda", "pyarrow._cuda", "pyarrow._pyarrow_cpp_tests", "pyarrow.tests",
          "pyarrow.benchmark")


def wanted(name):
    # pkgutil reports the bundled C++ libraries (libarrow_python_flight.so...) as extension modules too.
    if name.rsplit(".", 1)[-1].startswith("libarrow"):
        return False
    return not any(name == unused or name.startswith(unused + ".") for unused in UNUSED)


hiddenimports = collect_submodules("pyarrow", filter=wanted)
excludedimports = list(UNUSED)
# Headers, Cython sources and the C++ sources of the bindings are for building against pyarrow, not running it.
# The libraries are left to the binary analysis, which takes only those that the kept modules link: collected
# as data they would all come along, Flight and S3 included.
datas = collect_data_files("pyarrow", excludes=["include", "src", "tests", "**/*.pxd", "**/*.pyx", "**/*.pxi",
                                                "**/*.h", "**/*.cc", "**/*.cmake", "**/*.so", "**/*.so.*",
                                                "**/*.dll", "**/*.lib", "**/*.dylib"])
