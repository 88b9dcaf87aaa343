#!/bin/sh
# The `pki` service of docker-compose.yml: runs once before everything else and makes
# what the stack's components share through volumes, keeping what exists (a second
# `up` changes nothing):
#   /etcd-pki   etcd's CA, the members' server and peer certificate (etcd-1..3), the
#               etcd client certificates of the scheduler (also persys-dns') and gateway
#   /scheduler  the cluster CA, admin certificate and join token (the schedulers' shared
#               --data-dir; they load them)
#   /join       join-token only (the agents')
#   /scrape     ca.crt and a client certificate of the scheduler identity (Prometheus:
#               the agents' /metrics admits only that identity)
set -eu
persys pki etcd --dir /etcd-pki --san etcd-1,etcd-2,etcd-3,localhost,127.0.0.1
persys pki cluster --data-dir /scheduler
umask 077
cp /scheduler/join-token /join/.join-token && mv /join/.join-token /join/join-token
cp /scheduler/ca.crt /scrape/.ca.crt && mv /scrape/.ca.crt /scrape/ca.crt
persys pki client --data-dir /scheduler --identity scheduler --out /scrape/scraper
