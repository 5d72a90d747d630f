# pmesh_pb2.py is generated here from proto/pmesh.proto by the build (setup.py)
# or by `make -C sdk/python gen` for working in the source tree; never edited
# or committed.
