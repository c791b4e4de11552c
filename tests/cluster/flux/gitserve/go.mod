module eventspan.dev/tests/cluster/flux/gitserve

go 1.26.0
