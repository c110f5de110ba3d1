# bash completion for guts(1)
# Install: source this file, or copy it to
# /usr/share/bash-completion/completions/guts

_guts_home() {
    # The state directory the command line refers to: --home, $GUTS_HOME, ~/.guts.
    local i home=
    for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
        case ${COMP_WORDS[i]} in
            --home) home=${COMP_WORDS[i + 1]} ;;
            --home=*) home=${COMP_WORDS[i]#--home=} ;;
        esac
    done
    [[ -z $home ]] && home=${GUTS_HOME:-}
    [[ -z $home ]] && home=${HOME:-}/.guts
    printf '%s\n' "${home/#\~/$HOME}"
}

_guts_book_targets() {
    # Peer IDs and banned addresses in <home>/peers (guts-peers(5)).
    local book
    book="$(_guts_home)/peers"
    [[ -r $book ]] && awk '$1 == "peer" || $1 == "ban" { print $2 }' "$book" 2>/dev/null
}

_guts_known_peers() {
    # Aliases in <home>/config and addresses in <home>/known_peers (guts-known-peers(5)).
    local home
    home=$(_guts_home)
    [[ -r $home/config ]] && sed -n 's/^[[:space:]]*alias\.\([A-Za-z][A-Za-z0-9_-]*\)[[:space:]]*=.*/\1/p' "$home/config" 2>/dev/null
    [[ -r $home/known_peers ]] && awk '$1 !~ /^#/ && NF >= 2 { print $1 }' "$home/known_peers" 2>/dev/null
}

_guts() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    local global_opts="--home --json -v --verbose -q --quiet --log-format -h --help --version"
    # Options that take a value (the next word, or after '=').
    local value_opts="--home -l --listen -b --bootstrap --max-connections --handshake-timeout
        --idle-timeout --keepalive-interval --network --repos -W --timeout -c --count -i --interval
        -p --peer --into -m --mirror --topic -t --announce-interval -d --data --max-transfers --stall-timeout
        --deadline --max-pack-size --max-object-size --max-delta-depth --work-factor --max-work -j --threads --wait
        --name --description --default-branch --threshold --for --max-age --resign-interval --proposal
        --mirror-interval -w --deadline --log-format --known-peers --announce-address --transport"

    # Find the command words, skipping options and their values.
    local i w cmd= sub= skip= args=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then skip=; continue; fi
        if [[ $w == "=" ]]; then skip=1; continue; fi
        case $w in
            --) continue ;;
            --*=*) continue ;;
            -*)
                [[ " "$value_opts" " == *" $w "* ]] && skip=1
                continue
                ;;
        esac
        if [[ -z $cmd ]]; then
            cmd=$w
        elif [[ ($cmd == objects || $cmd == gossip || $cmd == repo || $cmd == peers) && -z $sub ]]; then
            sub=$w
        elif [[ $cmd == repo && $sub == delegates && ${#args[@]} == 0 && ($w == add || $w == remove) ]]; then
            sub="delegates $w"
        else
            args+=("$w")
        fi
    done

    # --opt=value with '=' not a word break
    case $cur in
        --home=* | --repos=* | --into=*)
            local IFS=$'\n' opt=${cur%%=*}
            COMPREPLY=($(compgen -d -P "$opt=" -- "${cur#*=}"))
            return
            ;;
    esac
    # --opt=value split by COMP_WORDBREAKS into --opt, =, value
    if [[ $prev == "=" ]] && ((COMP_CWORD >= 2)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi

    case $prev in
        --home | --repos | --into)
            local IFS=$'\n'
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -d -- "$cur"))
            return
            ;;
        --known-peers)
            COMPREPLY=($(compgen -W "accept-new strict off" -- "$cur"))
            return
            ;;
        --transport)
            COMPREPLY=($(compgen -W "tcp quic" -- "$cur"))
            return
            ;;
        -b | --bootstrap | -p | --peer)
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$(_guts_known_peers)" -- "$cur"))
            return
            ;;
        -l | --listen | --max-connections | --handshake-timeout | \
            --idle-timeout | --keepalive-interval | --network | -W | --timeout | \
            -c | --count | -i | --interval | -m | --mirror | --topic | -t | \
            --announce-interval | -d | --data | --max-transfers | --stall-timeout | \
            --deadline | --max-pack-size | --max-object-size | --max-delta-depth | --work-factor | \
            --max-work | -j | --threads | --wait | \
            --name | --description | --default-branch | --threshold | --for | --max-age | --resign-interval | \
            --mirror-interval | -w | --announce-address)
            return # free-form value
            ;;
    esac

    local opts words=
    case $cmd in
        "") words="keygen listen status peers sync ls find gossip dial ping objects repo help version"; opts=$global_opts ;;
        keygen) opts="-f --force --show" ;;
        listen)
            opts="-l --listen -b --bootstrap --repos --max-connections --handshake-timeout
                --idle-timeout --keepalive-interval --network -m --mirror --topic --announce-interval --resign-interval --max-transfers --stall-timeout
                --follow-symlinks --mirror-interval --known-peers --announce-address --no-dht"
            ;;
        sync)
            opts="-p --peer --into -f --force -W --timeout --wait --no-wait --max-age --deadline --network --max-pack-size --max-object-size
                --max-delta-depth --work-factor --max-work --all --exit-code --ephemeral --known-peers --transport --bootstrap"
            if [[ $cur != -* ]]; then
                # OWNER/NAME (or NAME) of the repositories in <home>/repos.
                local IFS=$'\n' home r names=()
                home=$(_guts_home)
                for r in "$home"/repos/*/*.git "$home"/repos/*.git; do
                    [[ -d $r ]] || continue
                    r=${r#"$home"/repos/}
                    names+=("${r%.git}")
                done
                COMPREPLY=($(compgen -W "${names[*]}" -- "$cur"))
                return
            fi
            ;;
        gossip)
            case $sub in
                "") words="publish subscribe" ;;
                publish) opts="-t --topic -p --peer -d --data -W --timeout --network --ephemeral" ;;
                subscribe) opts="-t --topic -p --peer -c --count -W --timeout --network --raw --ephemeral" ;;
                *) return ;;
            esac
            ;;
        status) opts="" ;;
        peers)
            case $sub in
                "") words="score ban unban forget" ;;
                score) opts="" ;;
                ban) opts="--for" ;;
                unban) opts="" ;;
                forget)
                    if [[ $cur != -* ]]; then
                        local IFS=$'\n'
                        COMPREPLY=($(compgen -W "$(_guts_known_peers)" -- "$cur"))
                        return
                    fi
                    ;;
                *) return ;;
            esac
            if [[ -n $sub && $cur != -* ]]; then
                local IFS=$'\n'
                COMPREPLY=($(compgen -W "$(_guts_book_targets)" -- "$cur"))
                return
            fi
            ;;
        dial | ping | ls)
            case $cmd in
                dial) opts="-W --timeout --network --ephemeral --known-peers --transport --bootstrap" ;;
                ping) opts="-c --count -i --interval -W --timeout -w --deadline --network --ephemeral --known-peers --transport --bootstrap" ;;
                ls) opts="-W --timeout --network --ephemeral --known-peers" ;;
            esac
            if [[ $cur != -* ]] && ((${#args[@]} == 0)); then
                local IFS=$'\n'
                COMPREPLY=($(compgen -W "$(_guts_known_peers)" -- "$cur"))
                return
            fi
            ;;
        find) opts="--bootstrap --ephemeral --network" ;;
        objects)
            if [[ -z $sub ]]; then
                words="verify repack"
            else
                if [[ $sub == repack ]]; then
                    opts="--wait --no-wait"
                else
                    opts="-j --threads --no-connectivity --max-object-size --max-delta-depth --work-factor --max-work"
                fi
                if [[ $cur != -* ]]; then
                    # A repository path, or OWNER/NAME of a repository in <home>/repos.
                    local IFS=$'\n' home r names=()
                    home=$(_guts_home)
                    for r in "$home"/repos/*/*.git; do
                        [[ -d $r ]] || continue
                        r=${r#"$home"/repos/}
                        names+=("${r%.git}")
                    done
                    compopt -o filenames 2>/dev/null
                    COMPREPLY=($(compgen -W "${names[*]}" -- "$cur") $(compgen -d -- "$cur"))
                    return
                fi
            fi
            ;;
        repo)
            case $sub in
                "") words="init show sign delegates approve" ;;
                delegates) words="add remove" ;;
                approve) opts="--no-publish"
                    if [[ $cur != -* ]] && ((${#args[@]} == 0)); then
                        compopt -o filenames 2>/dev/null
                        COMPREPLY=($(compgen -f -- "$cur"))
                        return
                    fi ;;
                init) opts="--name --description --default-branch" ;;
                show | sign) opts="" ;;
                "delegates add" | "delegates remove") opts="-t --threshold -p --proposal" ;;
                *) return ;;
            esac
            if [[ -z $words && $cur != -* ]] && ((${#args[@]} == 0)); then
                # NAME or OWNER/NAME of the repositories in <home>/repos, or a directory.
                local IFS=$'\n' home r names=()
                home=$(_guts_home)
                for r in "$home"/repos/*/*.git "$home"/repos/*.git; do
                    [[ -d $r ]] || continue
                    r=${r#"$home"/repos/}
                    names+=("${r%.git}")
                done
                compopt -o filenames 2>/dev/null
                COMPREPLY=($(compgen -W "${names[*]}" -- "$cur") $(compgen -d -- "$cur"))
                return
            fi
            ;;
        help)
            case ${#args[@]}:${args[0]-} in
                0:) words="keygen listen status peers sync ls find gossip dial ping objects repo" ;;
                1:objects) words="verify repack" ;;
                1:repo) words="init show sign delegates" ;;
                2:repo) words="add remove" ;;
                1:gossip) words="publish subscribe" ;;
                1:peers) words="score ban unban forget" ;;
            esac
            ;;
        *) return ;;
    esac
    if [[ $cmd != "" ]]; then
        opts="$opts $global_opts"
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $words ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}

complete -F _guts guts
