# fish completion for guts(1)
# Install: copy to ~/.config/fish/completions/guts.fish

# The non-option words typed so far after 'guts' (command words and arguments),
# skipping the values of options that take one.
function __guts_words
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        switch $t
            case --home -l --listen -b --bootstrap --max-connections --handshake-timeout \
                --idle-timeout --keepalive-interval --network --repos -W --timeout -c --count -i --interval \
                -p --peer --into --deadline --max-pack-size --max-object-size --max-delta-depth --work-factor \
                --max-work -j --threads \
                --name --description --default-branch -t --threshold --for --max-age --resign-interval -p --proposal --known-peers
                set skip 1
            case '-*'
            case '*'
                echo $t
        end
    end
end

# True when no command has been typed yet.
function __guts_needs_command
    test (count (__guts_words)) -eq 0
end

# True when the command is $argv[1] (and, with $argv[2], its subcommand is $argv[2]).
function __guts_using
    set -l w (__guts_words)
    test (count $w) -ge (count $argv); or return 1
    for i in (seq (count $argv))
        test "$w[$i]" = "$argv[$i]"; or return 1
    end
end

# True when the words typed are exactly $argv.
function __guts_words_are
    set -l w (__guts_words)
    test "$w" = "$argv"
end

# The state directory: --home DIR on the command line, else $GUTS_HOME, else ~/.guts.
function __guts_home
    set -l tokens (commandline -opc)
    set -l home
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case --home
                set home $tokens[(math $i + 1)]
            case '--home=*'
                set home (string replace -- --home= '' $tokens[$i])
        end
    end
    test -n "$home"; or set home $GUTS_HOME
    test -n "$home"; or set home ~/.guts
    echo $home
end

# OWNER/NAME (and NAME) of the repositories in <home>/repos, <home> being --home,
# $GUTS_HOME or ~/.guts.
function __guts_repositories
    set -l home (__guts_home)
    for r in $home/repos/*/*.git $home/repos/*.git
        test -d $r; and string replace -r '\.git$' '' (string replace -- "$home/repos/" '' $r)
    end
end

# Peer IDs and banned addresses in <home>/peers (guts-peers(5)).
function __guts_book_targets
    set -l home (__guts_home)
    test -r $home/peers; and awk '$1 == "peer" || $1 == "ban" { print $2 }' $home/peers 2>/dev/null
end

# Aliases in <home>/config and addresses in <home>/known_peers (guts-known-peers(5)).
function __guts_known_peers
    set -l home (__guts_home)
    test -r $home/config; and sed -n 's/^[[:space:]]*alias\.\([A-Za-z][A-Za-z0-9_-]*\)[[:space:]]*=.*/\1/p' $home/config 2>/dev/null
    test -r $home/known_peers; and awk '$1 !~ /^#/ && NF >= 2 { print $1 }' $home/known_peers 2>/dev/null
end

complete -c guts -f

# Global options, before or after the command
complete -c guts -l home -x -a '(__fish_complete_directories (commandline -ct))' -d 'state directory (default: $GUTS_HOME, else ~/.guts)'
complete -c guts -l json -d 'machine-readable JSON on stdout'
complete -c guts -s v -l verbose -d 'more detail on stderr'
complete -c guts -s q -l quiet -d 'only errors on stderr, no result on success'
complete -c guts -l log-format -x -a 'text json' -d 'stderr lines as text or JSON objects'
complete -c guts -s h -l help -d 'show help and exit'
complete -c guts -l version -d 'print the version and exit'

# Commands
complete -c guts -n __guts_needs_command -a keygen -d 'create the node identity (Ed25519) and print its peer ID'
complete -c guts -n __guts_needs_command -a listen -d 'run a node: accept peers, keep bootstrap peers connected'
complete -c guts -n __guts_needs_command -a status -d 'show the running node: addresses, repositories, uptime'
complete -c guts -n __guts_needs_command -a peers -d 'list the peers the running node is connected to, with scores'
complete -c guts -n __guts_needs_command -a sync -d 'mirror a repository from a peer, verifying every object'
complete -c guts -n __guts_needs_command -a ls -d 'list the repositories a peer serves to you, or the refs of one'
complete -c guts -n __guts_needs_command -a find -d 'look a peer or a repository up in the DHT'
complete -c guts -n __guts_needs_command -a dial -d 'connect to a node, authenticate it and show its identity'
complete -c guts -n __guts_needs_command -a ping -d 'measure round-trip time to a node'
complete -c guts -n __guts_needs_command -a objects -d 'repository objects (objects verify, objects repack)'
complete -c guts -n __guts_needs_command -a repo -d 'repository identities (init, show, delegates)'
complete -c guts -n __guts_needs_command -a help -d 'show help for a command'
complete -c guts -n __guts_needs_command -a version -d 'print the version and exit'

# guts help COMMAND
complete -c guts -n '__guts_words_are help' -a 'keygen listen status peers sync ls find gossip dial ping objects repo' -d 'command'
complete -c guts -n '__guts_words_are help peers' -a 'score ban unban forget' -d 'peers command'
complete -c guts -n '__guts_words_are help repo' -a 'init show sign delegates approve' -d 'repo command'
complete -c guts -n '__guts_words_are help repo delegates' -a 'add remove' -d 'delegates command'
complete -c guts -n '__guts_words_are help objects' -a verify -d 'verify the objects of a repository'
complete -c guts -n '__guts_words_are help objects' -a repack -d 'consolidate packs and loose objects into one pack'

# guts keygen
complete -c guts -n '__guts_using keygen' -s f -l force -d 'replace an existing identity (its peer ID is lost)'
complete -c guts -n '__guts_using keygen' -l show -d 'print the existing peer ID instead of creating one'

# guts listen
complete -c guts -n '__guts_using listen' -s l -l listen -x -d 'address to bind (default 127.0.0.1:9000)'
complete -c guts -n '__guts_using listen' -s b -l bootstrap -x -a '(__guts_known_peers)' -d 'peer to keep connected, [PEERID@]ADDR or alias (repeatable)'
complete -c guts -n '__guts_using listen' -l max-connections -x -d 'most inbound connections at once (default 128)'
complete -c guts -n '__guts_using listen' -l handshake-timeout -x -d 'handshake deadline in seconds (default 10)'
complete -c guts -n '__guts_using listen' -l idle-timeout -x -d 'drop peers silent for SECONDS (default 90)'
complete -c guts -n '__guts_using listen' -l keepalive-interval -x -d 'ping peers silent for SECONDS (default 30)'
complete -c guts -n '__guts_using listen' -l network -x -d 'network ID (default empty)'
complete -c guts -n '__guts_using listen' -l repos -x -a '(__fish_complete_directories (commandline -ct))' -d 'also serve the repositories under DIR (repeatable)'
complete -c guts -n '__guts_using listen' -s m -l mirror -x -d 'follow REPO[@[PEERID@]ADDR]: sync at start, when announced, periodically (repeatable)'
complete -c guts -n '__guts_using listen' -l mirror-interval -x -d 'catch-up sync of each mirror every SECONDS (default 300, 0 for none)'
complete -c guts -n '__guts_using listen' -l topic -x -d 'also subscribe to and relay TOPIC (repeatable)'
complete -c guts -n '__guts_using listen' -l resign-interval -x -d 'sign unchanged delegate refs again after SECONDS (default 86400)'
complete -c guts -n '__guts_using listen' -l announce-interval -x -d 'seconds between scans for changes to announce (default 2)'
complete -c guts -n '__guts_using listen' -l max-transfers -x -d 'object transfers served at once (default 8)'
complete -c guts -n '__guts_using listen' -l stall-timeout -x -d 'cut off transfers whose peer takes nothing for SECONDS (default 60)'
complete -c guts -n '__guts_using listen' -l announce-address -x -d 'address to advertise in the DHT, IP:PORT (repeatable)'
complete -c guts -n '__guts_using listen' -l no-dht -d 'take no part in the DHT'
complete -c guts -n '__guts_using listen' -l follow-symlinks -d 'also serve repositories that symbolic links place outside their root'

# guts peers [score|ban|unban]
complete -c guts -n '__guts_words_are peers' -a score -d 'show peers\' scores, states and bans'
complete -c guts -n '__guts_words_are peers' -a ban -d 'ban a peer ID or an address/network'
complete -c guts -n '__guts_words_are peers' -a unban -d 'lift the ban of a peer ID or an address/network'
complete -c guts -n '__guts_using peers score' -a '(__guts_book_targets)' -d 'peer ID'
complete -c guts -n '__guts_words_are peers ban; or __guts_words_are peers unban' -a '(__guts_book_targets)' -d 'peer ID or ADDR[/PREFIX]'
complete -c guts -n '__guts_words_are peers' -a forget -d 'remove addresses from known_peers'
complete -c guts -n '__guts_using peers forget' -a '(__guts_known_peers)' -d 'address or alias'
complete -c guts -n '__guts_using peers ban' -l for -x -d 'how long: 30s, 10m, 2h, 7d (default: until unbanned)'

# guts gossip publish|subscribe
complete -c guts -n __guts_needs_command -a gossip -d 'publish to a topic or follow it'
complete -c guts -n '__guts_words_are gossip' -a publish -d 'sign a message and hand it to a node'
complete -c guts -n '__guts_words_are gossip' -a subscribe -d 'print every message on a topic'
complete -c guts -n '__guts_words_are help gossip' -a 'publish subscribe' -d 'gossip command'
complete -c guts -n '__guts_using gossip publish; or __guts_using gossip subscribe' -s t -l topic -x -d 'topic'
complete -c guts -n '__guts_using gossip publish; or __guts_using gossip subscribe' -s p -l peer -x -d 'node, [PEERID@]ADDR (default: the local node)'
complete -c guts -n '__guts_using gossip publish; or __guts_using gossip subscribe' -s W -l timeout -x -d 'timeout in seconds'
complete -c guts -n '__guts_using gossip publish; or __guts_using gossip subscribe' -l network -x -d 'network ID to connect within'
complete -c guts -n '__guts_using gossip publish' -s d -l data -x -d 'payload (default: standard input)'
complete -c guts -n '__guts_using gossip subscribe' -s c -l count -x -d 'exit after N messages'
complete -c guts -n '__guts_using gossip subscribe' -l raw -d 'print announcements as raw payloads, not decoded'
complete -c guts -n '__guts_using gossip publish; or __guts_using gossip subscribe' -l ephemeral -d 'with --peer: use a one-time identity'

# guts sync REPO --peer [PEERID@]ADDR
complete -c guts -n '__guts_using sync' -s p -l peer -x -a '(__guts_known_peers)' -d 'peer to sync from, [PEERID@]ADDR (repeatable, best score first)'
complete -c guts -n '__guts_using sync' -l into -x -a '(__fish_complete_directories (commandline -ct))' -d 'bare repository to sync into'
complete -c guts -n '__guts_using sync' -s f -l force -d 'mirror into a repository guts did not create (replaces its refs)'
complete -c guts -n '__guts_using sync' -s W -l timeout -x -d 'connect, handshake, per-answer silence and no-pack-data limit (default 30)'
complete -c guts -n '__guts_using sync' -l max-age -x -d 'fail when the newest signed state is older than SECONDS'
complete -c guts -n '__guts_using sync' -l deadline -x -d 'most SECONDS the whole sync may take (default 3600, 0 for none)'
complete -c guts -n '__guts_using sync' -l wait -x -d 'wait this long for another sync of the repository (default 600)'
complete -c guts -n '__guts_using sync' -l no-wait -d 'exit at once with status 10 if another sync holds the repository'
complete -c guts -n '__guts_using sync' -l network -x -d 'network ID to connect within'
complete -c guts -n '__guts_using sync' -l all -d 'sync every repository under the state directory'
complete -c guts -n '__guts_using sync' -l exit-code -d 'exit with status 1 when nothing was new'
complete -c guts -n '__guts_using sync; or __guts_using dial; or __guts_using ping; or __guts_using find' -l ephemeral -d 'use a one-time identity'
complete -c guts -n '__guts_using sync; or __guts_using dial; or __guts_using ping; or __guts_using find' -l bootstrap -x -d 'without a running node, join the DHT through [PEERID@]ADDR (repeatable)'
complete -c guts -n '__guts_using sync' -l max-pack-size -x -d 'most pack BYTES accepted (default 4G)'
complete -c guts -n '__guts_using sync; or __guts_using objects verify' -l max-object-size -x -d 'largest object accepted, BYTES (default 100M)'
complete -c guts -n '__guts_using sync; or __guts_using objects verify' -l max-delta-depth -x -d 'longest delta chain accepted (default 64)'
complete -c guts -n '__guts_using sync; or __guts_using objects verify' -l work-factor -x -d 'work allowed per pack byte (default 64, 0 for no limit)'
complete -c guts -n '__guts_using sync; or __guts_using objects verify' -l max-work -x -d 'cap on each kind of work, BYTES (default 64G)'
complete -c guts -n '__guts_using sync' -a '(__guts_repositories)' -d 'repository'

# --transport of the commands that dial one peer
complete -c guts -n '__guts_using dial; or __guts_using ping; or __guts_using sync' -l transport -x -a 'tcp quic' -d 'use only this transport (default: QUIC first, then TCP)'
# --known-peers of the commands that connect to peers
complete -c guts -n '__guts_using dial; or __guts_using ping; or __guts_using sync; or __guts_using ls; or __guts_using listen' -l known-peers -x -a 'accept-new strict off' -d 'how known_peers is used (default accept-new)'

# guts ls PEER [REPO]
complete -c guts -n '__guts_using ls' -s W -l timeout -x -d 'connect, handshake and per-answer limit (default 30)'
complete -c guts -n '__guts_using ls' -l network -x -d 'network ID to connect within'
complete -c guts -n '__guts_using ls' -l ephemeral -d 'use a one-time identity instead of the state directory\'s'
complete -c guts -n '__guts_words_are ls; or __guts_words_are dial; or __guts_words_are ping' -a '(__guts_known_peers)' -d 'peer'

# guts find PEERID|REPO-ID
complete -c guts -n '__guts_using find' -l network -x -d 'network ID to connect within'

# guts dial
complete -c guts -n '__guts_using dial' -s W -l timeout -x -d 'connect and handshake timeout in seconds'
complete -c guts -n '__guts_using dial' -l network -x -d 'network ID to connect within'

# guts ping
complete -c guts -n '__guts_using ping' -s c -l count -x -d 'stop after COUNT pings'
complete -c guts -n '__guts_using ping' -s i -l interval -x -d 'wait SECONDS between pings (default 1)'
complete -c guts -n '__guts_using ping' -s W -l timeout -x -d 'wait SECONDS for each pong and for connecting (default 5)'
complete -c guts -n '__guts_using ping' -s w -l deadline -x -d 'stop after DEADLINE seconds in all'
complete -c guts -n '__guts_using ping' -l network -x -d 'network ID to connect within'

# guts objects verify [path | OWNER/NAME]
complete -c guts -n '__guts_words_are objects' -a verify -d 'verify the objects of a repository'
complete -c guts -n '__guts_words_are objects verify' -a '(__guts_repositories)' -d 'repository'
complete -c guts -n '__guts_words_are objects verify' -a '(__fish_complete_directories (commandline -ct))'
complete -c guts -n '__guts_using objects verify' -s j -l threads -x -d 'worker threads (default: CPUs, at most 4)'
complete -c guts -n '__guts_using objects verify' -l no-connectivity -d 'skip the reachability check'
# guts objects repack [path | OWNER/NAME]
complete -c guts -n '__guts_words_are objects' -a repack -d 'consolidate packs and loose objects into one pack'
complete -c guts -n '__guts_words_are objects repack' -a '(__guts_repositories)' -d 'repository'
complete -c guts -n '__guts_words_are objects repack' -a '(__fish_complete_directories (commandline -ct))'
complete -c guts -n '__guts_using objects repack' -l wait -x -d 'wait SECONDS for a sync that holds the repository (default 600)'
complete -c guts -n '__guts_using objects repack' -l no-wait -d 'exit with status 10 if the repository is locked'

# guts repo init|show|delegates add|remove
complete -c guts -n '__guts_words_are repo' -a init -d 'give a repository an identity with this node as delegate'
complete -c guts -n '__guts_words_are repo' -a show -d 'show a repository identity and signed refs'
complete -c guts -n '__guts_words_are repo' -a sign -d 'sign this node refs of a repository now'
complete -c guts -n '__guts_words_are repo' -a delegates -d 'add or remove delegates'
complete -c guts -n '__guts_words_are repo delegates' -a 'add remove' -d 'delegates command'
complete -c guts -n '__guts_words_are repo' -a approve -d 'sign a proposed identity version, publish it at the threshold'
complete -c guts -n '__guts_using repo approve' -l no-publish -d 'only add this node signature'
complete -c guts -n '__guts_using repo delegates' -s p -l proposal -r -d 'write a proposal signed by this node to FILE'
complete -c guts -n '__guts_using repo init' -l name -x -d 'the name in the identity document'
complete -c guts -n '__guts_using repo init' -l description -x -d 'a one-line description'
complete -c guts -n '__guts_using repo init' -l default-branch -x -d 'the default branch'
complete -c guts -n '__guts_using repo delegates' -s t -l threshold -x -d 'signatures the next versions need'
complete -c guts -n '__guts_words_are repo init; or __guts_words_are repo show; or __guts_words_are repo sign; or __guts_words_are repo delegates add; or __guts_words_are repo delegates remove' -a '(__guts_repositories)' -d 'repository'
complete -c guts -n '__guts_words_are repo init; or __guts_words_are repo show' -a '(__fish_complete_directories (commandline -ct))'
