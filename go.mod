module github.com/sli2vol/sli2vol

go 1.26.8

require github.com/wangkuiyi/gotorch v0.0.0-20201028015551-9afed2f3ad7b

require github.com/stretchr/testify v1.11.1 // indirect
