module github.com/sluicemcp/sluice/examples/cli-binding

go 1.26.8

require github.com/sluicemcp/sluice v0.0.0

replace github.com/sluicemcp/sluice => ../..
