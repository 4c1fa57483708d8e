module taipan

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.10.1
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)

require golang.org/x/text v0.43.0 // indirect
