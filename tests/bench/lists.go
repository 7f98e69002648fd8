package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"im2000/lib/addr"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire/msrap"
)

func benchLists() {
	tmp, _ := os.MkdirTemp("/var/tmp", "im2000-bench-lists-")
	defer os.RemoveAll(tmp)
	bin, _ := filepath.Abs(*binDir)
	storeDir := filepath.Join(tmp, "store")
	must(os.MkdirAll(storeDir, 0o755))
	st, err := store.Open(storeDir)
	must(err)
	acct, _ := st.Account("alice")
	from, _ := addr.Parse("alice@example.org")
	post := func(body []byte) *store.Envelope {
		d, err := acct.NewDraft(store.Submission{Sender: from, Lifetime: 24 * time.Hour, Lists: []string{"golang"}}, store.Limits{})
		must(err)
		d.Write(body)
		env, err := d.Commit()
		must(err)
		return env
	}
	const archived = 10000
	log("archiving %d posts", archived)
	for i := 0; i < archived; i++ {
		post([]byte(fmt.Sprintf("Subject: post %d\r\n\r\nhello\r\n", i)))
	}
	time.Sleep(store.ScanLag + time.Second)

	msrapAddr := "127.0.0.1:" + freePort()
	rd := exec.Command(filepath.Join(bin, "im2000-retrieved"), "-l", msrapAddr)
	rd.Env = append(os.Environ(), "IM2000_STORE="+storeDir)
	must(rd.Start())
	defer func() { rd.Process.Kill(); rd.Wait() }()
	waitListening(msrapAddr)

	// A new reader backfills with im2000-listd into its agent.
	agentDir := filepath.Join(tmp, "agent")
	agentAddr, stopAgent := startAgent(agentDir, "reader.example", []string{"r"})
	defer stopAgent()
	confDir := filepath.Join(tmp, "rconf")
	must(os.MkdirAll(confDir, 0o755))
	for name, v := range map[string]string{"me": "reader.example", "rnasp": agentAddr, "listinterval": "3600",
		"listfile": "golang " + msrapAddr + " backfill", "listdstate": filepath.Join(tmp, "listd")} {
		must(os.WriteFile(filepath.Join(confDir, name), []byte(v+"\n"), 0o644))
	}
	ld := exec.Command(filepath.Join(bin, "im2000-listd"))
	ld.Env = append(os.Environ(), "IM2000_CONF="+confDir, "IM2000_ACCOUNT=r")
	start := time.Now()
	must(ld.Start())
	defer func() { ld.Process.Kill(); ld.Wait() }()
	spool := filepath.Join(agentDir, "spool", "r")
	for {
		ents, _ := os.ReadDir(spool)
		if len(ents) >= archived {
			break
		}
		if time.Since(start) > 5*time.Minute {
			log("backfill: only %d of %d after 5 minutes", len(ents), archived)
			os.Exit(111)
		}
		time.Sleep(10 * time.Millisecond)
	}
	backfill := time.Since(start)

	// An up-to-date reader's scan: one ScanList from the last endtime.
	c, err := session.Dial(context.Background(), msrap.Protocol, msrapAddr, time.Minute)
	must(err)
	defer c.Close()
	first, err := session.Expect[*msrap.ScanListOK](c, &msrap.ScanList{ListName: "golang"})
	must(err)
	end := first.EndTime
	var scans []time.Duration
	for i := 0; i < 200; i++ {
		s := time.Now()
		r, err := session.Expect[*msrap.ScanListOK](c, &msrap.ScanList{ListName: "golang", BeginTime: end})
		must(err)
		if n := len(r.Messages); n != 0 {
			log("an up-to-date scan returned %d posts", n)
			os.Exit(111)
		}
		scans = append(scans, time.Since(s))
	}
	fmt.Printf("\nLists: a list with %d archived posts (%s):\n\n", archived, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| what | time |")
	fmt.Println("|---|---:|")
	fmt.Printf("| a new reader's backfill with im2000-listd (ScanList, then notifications to its agent) | %v |\n", backfill.Round(time.Millisecond))
	fmt.Printf("| an up-to-date reader's scan: one ScanList round trip, nothing new (median of 200) | %v |\n", percentile(scans, .5).Round(time.Microsecond))
	fmt.Printf("| the same, p99 | %v |\n", percentile(scans, .99).Round(time.Microsecond))

	// One post read by 1,000 readers: the store's side.
	msg := sized(10 << 10)
	before := diskWritten(storeDir)
	env := post(msg)
	time.Sleep(store.ScanLag + time.Second)
	for i := 0; i < 1000; i++ {
		if _, err := retrieveWhole(c, env.Lists[0].ID); err != nil {
			must(err)
		}
	}
	imBytes := diskWritten(storeDir) - before
	pfTime, pfBytes, err := postfixFanout(msg)
	if err != nil {
		log("postfix: %v", err)
		return
	}
	fmt.Printf("\nOne 10 KiB post read by 1,000 readers: %d bytes written at the store (the post, its index entry, and 1,000 counted retrievals); postfix delivering it to 1,000 Maildir subscribers: %d bytes (%v). postfix / IM2000: **%.1f×**\n",
		imBytes, pfBytes, pfTime.Round(time.Millisecond), float64(pfBytes)/float64(imBytes))
}
