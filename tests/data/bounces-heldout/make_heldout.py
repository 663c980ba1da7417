import re, subprocess, hashlib, os, sys
GO='/work/.mirror/sisimai+go-sisimai/repo'
SOE='/work/.mirror/sisimai+set-of-emails/repo'
def git(repo,*a): return subprocess.run(['git','-C',repo]+list(a),capture_output=True).stdout
files=git(GO,'ls-tree','-r','--name-only','HEAD').decode().split()
labels=[]
for f in files:
    m=re.match(r'fact/\d+-((?:lhost|rhost|arf|rfc\d+|lhost)-?[a-z0-9-]*)_test\.go$',f)
    if not m: continue
    prefix=m.group(1)
    src=git(GO,'show','HEAD:'+f).decode()
    pm=re.search(r'publiclist\s*:=\s*\[\]\[\]IsExpected\{(.*?)\};\s*EngineTest',src,re.S)
    if not pm: continue
    for e in re.finditer(r'\{"(\d+)",\s*(\d+),\s*"([^"]*)",\s*"([^"]*)",\s*"([^"]*)",\s*(true|false),\s*"([^"]*)"\}',pm.group(1)):
        num,idx,st,code,reason,hard,fb=e.groups()
        labels.append((f"{prefix}-{num}.eml",int(idx),st,code,reason,hard,fb))
print(len(labels),'labels', file=sys.stderr)
ours=set(os.listdir('/work/main/tests/data/bounces/eml'))
ourhash=set(hashlib.sha256(open('/work/main/tests/data/bounces/eml/'+n,'rb').read()).hexdigest() for n in ours)
soe=set(x.split('/')[-1] for x in git(SOE,'ls-tree','-r','--name-only','HEAD','maildir/bsd').decode().split())
os.makedirs('out/eml',exist_ok=True)
kept=[]
for l in labels:
    n=l[0]
    if n in ours or n not in soe: continue
    data=git(SOE,'show','HEAD:maildir/bsd/'+n)
    if hashlib.sha256(data).hexdigest() in ourhash: continue
    open('out/eml/'+n,'wb').write(data)
    kept.append(l)
with open('out/labels.tsv','w') as o:
    o.write('file\tindex\tstatus\treply_code\tsisimai_reason\thard_bounce\tfeedback_type\n')
    for l in sorted(kept):
        o.write('\t'.join(str(x) for x in l)+'\n')
print(len(kept),'held-out labels,',len(set(k[0] for k in kept)),'files', file=sys.stderr)
