# cffi extensions are declared here: setuptools takes cffi_modules only from setup().
from setuptools import setup

setup(cffi_modules=["cffi_build/ptrace_build.py:ffibuilder", "cffi_build/kvm_build.py:ffibuilder"])
