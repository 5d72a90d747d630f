# pmesh_pb2.py is generated here from proto/pmesh.proto by the package's build
# (setup.py runs protoc); it is never edited by hand nor committed.
