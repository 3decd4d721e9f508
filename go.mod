module github.com/daxstack/daxstack

go 1.26
