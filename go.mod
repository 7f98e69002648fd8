module im2000

go 1.26.0

require (
	github.com/emersion/go-message v0.18.2
	github.com/google/renameio/v2 v2.0.2
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.60.0
	golang.org/x/sys v0.49.0
)
