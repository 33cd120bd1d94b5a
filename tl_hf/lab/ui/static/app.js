// tl-hf lab page: polls /api/state (the study is the only source of truth), draws the trials,
// the configurations and the selected trials' curves (charts.js, shared with the live report),
// and queues, stops and marks trials through the JSON routes. No request leaves the server.
(function(){
const {PAL,fmt,esc}=TLHFCharts;
const $=id=>document.getElementById(id);
const token=new URLSearchParams(location.search).get('token');
const S={v:null,d:null,sel:new Set(),sort:{k:'number',up:true},curves:{},form:null,busy:false,
  zoom:null,hidden:{},drag:null,mouse:null,errors:0};
const headers=token?{'X-TLHF-Token':token}:{};
async function api(path,opt={}){
  const r=await fetch(path,{cache:'no-store',credentials:'same-origin',...opt,headers:{...headers,...(opt.headers||{})}});
  const j=await r.json().catch(()=>({}));
  if(!r.ok)throw new Error(j.detail||r.statusText);
  return j;
}
const post=(path,body)=>api(path,{method:'POST',headers:{'Content-Type':'application/json','X-TLHF':'1'},body:JSON.stringify(body||{})});
const hms=s=>{if(s==null)return'';s=Math.max(0,Math.round(s));const m=Math.floor(s/60);return m?`${m}m ${s%60}s`:`${s}s`};
const colourOf=n=>PAL[[...S.sel].sort((a,b)=>a-b).indexOf(n)%PAL.length];

// -- the controls
function lrSet(v){$('q-lr-v').value=(+v).toExponential(1);$('q-lr').value=Math.log10(v)}
function strategyChanged(){
  const f=S.form,s=$('q-strategy').value;
  if(f.learning_rates[s])lrSet(f.learning_rates[s]);
  $('q-decay-l').style.display=s==='llrd'?'':'none';
  $('q-layers').disabled=s!=='frozen';
}
function probe(p){
  if(!p||!p.accuracy)return'';
  const n=p.accuracy.length,lo=Math.min(...p.accuracy),hi=Math.max(...p.accuracy)||1;
  const pts=p.accuracy.map((a,i)=>`${(i/(Math.max(1,n-1))*300).toFixed(1)},${(55-(a-lo)/((hi-lo)||1)*50).toFixed(1)}`).join(' ');
  return `<div class="mut">playbook probe: validation accuracy per block (0 = embeddings)</div><svg viewBox="0 0 300 60" preserveAspectRatio="none"><polyline fill="none" stroke="#8250df" stroke-width="2" points="${pts}"/></svg>`;
}
async function loadForm(){
  const f=S.form=await api('/api/form');
  if(!f.enabled){$('qform').querySelectorAll('input,select,button').forEach(e=>e.disabled=true);msg(f.reason||'queueing is off','error');return}
  $('q-strategy').innerHTML=f.strategies.map(s=>`<option${s===f.strategy?' selected':''}>${esc(s)}</option>`).join('');
  const L=f.layers??12;$('q-layers').max=L;$('q-layers-max').textContent=f.layers!=null?`of ${L} blocks`:'(blocks unknown)';
  $('q-decay').value=f.llrd_decay;$('q-epochs').value=f.epochs;$('q-seeds').value=f.seeds;
  $('q-aug-list').innerHTML=f.augment_sets.map(a=>`<option value="${esc(a.split('=')[0])}">`).join('');
  $('q-aug').value=(f.augment_sets[0]||'none').split('=')[0];
  $('q-probe').innerHTML=probe(f.probe);
  strategyChanged();
}
function msg(text,cls){const m=$('q-msg');m.textContent=text;m.className=cls||''}
$('q-strategy').onchange=strategyChanged;
$('q-layers').oninput=()=>$('q-layers-v').textContent=$('q-layers').value;
$('q-lr').oninput=()=>$('q-lr-v').value=Math.pow(10,+$('q-lr').value).toExponential(1);
$('q-lr-v').onchange=()=>{const v=+$('q-lr-v').value;if(v>0)$('q-lr').value=Math.log10(v)};
$('qform').onsubmit=async e=>{
  e.preventDefault();
  const body={strategy:$('q-strategy').value,trainable_layers:$('q-layers').value,learning_rate:$('q-lr-v').value,
    llrd_decay:$('q-decay').value,augment_set:$('q-aug').value,num_train_epochs:$('q-epochs').value,seeds:$('q-seeds').value};
  if(body.strategy!=='frozen')body.trainable_layers=0;
  $('q-run').disabled=true;
  try{const r=await post('/api/queue',body);
    r.trials.forEach(n=>S.sel.add(n));
    msg(r.queued?`queued ${r.queued} trial(s): #${r.trials.join(', #')}`:`already in the study: #${r.trials.join(', #')}`,'ok');
    S.v=null;poll();
  }catch(err){msg(err.message,'error')}
  finally{$('q-run').disabled=false}
};
$('q-worker').onclick=async()=>{try{const r=await post('/api/workers');msg(`worker started (pid ${r.started})`,'ok')}catch(err){msg(err.message,'error')}};

// -- the tables
const COLS=[['sel',''],['number','#'],['config','configuration'],['seed','seed'],['state','state'],['objective_value',null],
  ['best_epoch','best ep.'],['stopped_epoch','stopped'],['train_time_s','train s'],['trainable_params','trainable'],['act','']];
function cell(r,k){
  const v=r[k];
  if(k==='sel')return`<td><input type="checkbox" data-n="${r.number}"${S.sel.has(r.number)?' checked':''}>${S.sel.has(r.number)?`<span class="swatch" style="background:${colourOf(r.number)}"></span>`:''}</td>`;
  if(k==='state'){const p=r.progress,run=r.state==='running'&&p;  // a running trial: its epoch and ETA
    return`<td><span class="badge ${v}" title="${esc(r.fail_reason||'')}">${v}</span>${run?`<span class="prog"> ep ${fmt(p.epoch||0)}${p.num_train_epochs?'/'+fmt(p.num_train_epochs):''}${p.eta_s!=null?' · ETA '+hms(p.eta_s):''}</span>`:''}</td>`}
  if(k==='trainable_params')return`<td class="n">${v==null?'':(+v).toLocaleString('en')}</td>`;
  if(k==='train_time_s')return`<td class="n">${v==null?'':(+v).toFixed(1)}</td>`;
  if(k==='act')return`<td>${r.state==='running'||r.state==='waiting'?`<button class="small stop" data-stop="${r.number}">stop</button>`:''}</td>`;
  if(k==='config')return`<td>${esc(v)}</td>`;
  return`<td class="n">${v==null?'':typeof v==='number'?fmt(v):esc(v)}</td>`;
}
function sortKey(r,k){const v=r[k];return v==null?(S.sort.up?Infinity:-Infinity):v}
function trialsTable(){
  const d=S.d,f=S.filter||'',{k,up}=S.sort;
  let rows=d.trials.filter(r=>!f||f.split(/\s+/).every(w=>`${r.config} seed=${r.seed} ${r.state} #${r.number}`.toLowerCase().includes(w.toLowerCase())));
  rows=rows.slice().sort((a,b)=>{const x=sortKey(a,k),y=sortKey(b,k);return(x<y?-1:x>y?1:0)*(up?1:-1)});
  const head=COLS.map(([c,h])=>`<th data-k="${c}" class="${c===k?'sorted'+(up?' up':''):''}">${esc(h??d.objective.replace(/^eval_/,''))}</th>`).join('');
  $('trials').innerHTML=`<table id="trials-table"><thead><tr>${head}</tr></thead><tbody>${rows.map(r=>`<tr data-n="${r.number}" data-state="${r.state}" class="${S.sel.has(r.number)?'sel':''}">${COLS.map(([c])=>cell(r,c)).join('')}</tr>`).join('')}</tbody></table>`;
}
$('trials').onclick=async e=>{
  const t=e.target;
  if(t.dataset.stop){t.disabled=true;try{const r=await post(`/api/trials/${t.dataset.stop}/stop`);msg(`trial #${r.number}: ${r.status}`,'ok')}catch(err){msg(err.message,'error')}return}
  if(t.matches('input[type=checkbox]')){const n=+t.dataset.n;t.checked?S.sel.add(n):S.sel.delete(n);trialsTable();clearTimeout(S.ct);S.ct=setTimeout(loadCurves,30);return}
  const th=t.closest('th');if(th&&th.dataset.k&&th.dataset.k!=='sel'&&th.dataset.k!=='act'){const k=th.dataset.k;S.sort={k,up:S.sort.k===k?!S.sort.up:true};trialsTable()}
};
$('filter').oninput=()=>{S.filter=$('filter').value;trialsTable()};
function summaryTable(){
  const d=S.d,mark=d.marked_winner;
  $('summary').innerHTML=`<table id="summary-table"><thead><tr><th>rank</th><th>configuration</th><th>mean ± std</th><th></th></tr></thead><tbody>${d.summary.map(c=>
    `<tr data-config="${esc(c.config)}"><td class="n">${c.rank??''}</td><td>${esc(c.config)}<div class="prog">${c.complete} complete${c.pruned?` · ${c.pruned} pruned/stopped`:''}${c.failed?` · ${c.failed} failed`:''}${c.pending?` · ${c.pending} to run`:''}</div></td><td class="n">${c.mean==null?'':fmt(c.mean)+' ± '+fmt(c.std)}</td><td>${c.mean==null?'':`<button class="small ghost${mark&&mark.config===c.config?' on':''}" data-win="${esc(c.config)}" title="mark as the winner: show its command">★</button>`}</td></tr>`).join('')}</tbody></table>`;
  const w=mark||d.lab_winner;
  $('winner').innerHTML=w?`<p><b>${mark?'Marked winner':'The lab\'s winner'}:</b> ${esc(w.config)}</p><pre id="winner-command">${esc(w.command||'')}</pre>`:'';
}
$('summary').onclick=async e=>{const c=e.target.dataset.win;if(c==null)return;try{await post('/api/winner',{config:c});S.v=null;poll()}catch(err){msg(err.message,'error')}};
function playbook(){
  const p=S.d.playbook;$('playbook-card').hidden=!p;if(!p)return;
  $('playbook').innerHTML=(p.trail||[]).map(s=>`<p><b>${esc(s.step)}</b> (${s.ran?'ran':'skipped'}): ${esc(s.why||'')}</p>`).join('');
}
function header(){
  const d=S.d,n={};d.trials.forEach(r=>n[r.state]=(n[r.state]||0)+1);
  $('meta').innerHTML=`${esc(d.modality||'')} · ranked by validation ${esc(d.objective)} · ${d.trials.length} trials (${Object.entries(n).map(([k,v])=>`${v} ${k}`).join(', ')}) · workers started here: ${d.workers}`;
}

// -- the curves of the selected trials, overlaid
function panels(){
  const obj=S.d.objective,loss=[],metric=[],lr=[];
  for(const n of [...S.sel].sort((a,b)=>a-b)){
    const c=S.curves[n],color=colourOf(n);
    if(!c)continue;
    loss.push({name:`#${n} train loss`,pts:c.train,color});
    loss.push({name:`#${n} validation loss`,pts:c.eval.filter(r=>r.eval_loss!=null).map(r=>[r.epoch,r.eval_loss,r.step]),dots:1,dash:1,color});
    metric.push({name:`#${n} ${obj.replace(/^eval_/,'')}`,pts:c.eval.filter(r=>r[obj]!=null).map(r=>[r.epoch,r[obj],r.step]),dots:1,color});
    const groups=[...new Set(c.learning_rates.flatMap(r=>Object.keys(r.lr||{})))];
    // one trial: a colour per group; several: the trial's colour, groups told apart by dashes
    groups.forEach((g,i)=>lr.push({name:`#${n} ${g}`,pts:c.learning_rates.filter(r=>r.lr&&r.lr[g]>0).map(r=>[r.epoch,r.lr[g],r.step]),color:S.sel.size===1?PAL[i%PAL.length]:color,dash:S.sel.size===1?0:i%2}));
  }
  const P=[];
  if(loss.length)P.push({id:'loss',title:'Loss (train solid, validation dashed with dots)',series:loss});
  if(metric.length)P.push({id:'metric',title:`Validation ${esc(obj.replace(/^eval_/,''))} per epoch`,series:metric});
  if(lr.length)P.push({id:'lr',title:'Learning rate per parameter group (log scale)',log:1,h:200,series:lr});
  return P;
}
function drawCharts(){
  if(!S.d)return;
  const P=panels(),marks={};let hi=1;
  const mark=(e,kind,n,word,col)=>{const m=marks[e]=marks[e]||{e,kind,col,parts:{}};(m.parts[word]=m.parts[word]||[]).push(n);
    if(kind==='stop'){m.kind='stop';m.col=col}else if(m.kind==='best'&&m.col!==col)m.col='#57606a'};
  for(const n of [...S.sel].sort((a,b)=>a-b)){const c=S.curves[n];if(!c)continue;hi=Math.max(hi,c.num_train_epochs||0,...c.eval.map(r=>r.epoch||0));
    if(c.best_epoch!=null)mark(c.best_epoch,'best',n,'best',colourOf(n));
    const row=S.d.trials.find(r=>r.number===n);
    if(row&&(row.state==='stopped'||row.state==='pruned'||c.early_stopped)&&c.eval.length)mark(c.eval[c.eval.length-1].epoch,'stop',n,row.state==='complete'?'early stop':row.state,'#cf222e');}
  // one marker per epoch: "#1 #3 best · #5 pruned"
  const markers=Object.values(marks).map(m=>({e:m.e,kind:m.kind,col:m.col,lab:Object.entries(m.parts).map(([w,ns])=>ns.map(n=>'#'+n).join(' ')+' '+w).join(' · ')}));
  $('sel-note').textContent=S.sel.size?`${S.sel.size} trial(s) overlaid`:'tick trials above to overlay them';
  if(!P.length){$('charts').innerHTML='';return}
  TLHFCharts.draw($('charts'),P,{S,dom:[0,hi],markers,tip:document.querySelector('.tlhf-tip'),redraw:drawCharts});
}
async function loadCurves(){
  const want=[...S.sel];
  if(want.length)S.curves=await api('/api/curves?trials='+want.join(',')).catch(()=>S.curves);
  drawCharts();
}

// -- a long poll: the server answers when the study or a running trial's files change
async function poll(){
  if(S.busy)return;S.busy=true;
  try{
    const d=await api('/api/state'+(S.v?'?wait=15&v='+encodeURIComponent(S.v):''));
    S.errors=0;$('conn').className='badge done';$('conn').textContent='live';
    if(!d.same){S.d=d;S.v=d.version;header();summaryTable();trialsTable();playbook();await loadCurves()}
  }catch(err){if(++S.errors>2){$('conn').className='badge stop';$('conn').textContent='disconnected: '+err.message}}
  finally{S.busy=false}
  setTimeout(poll,S.errors?2000:50);  // the server holds the request until something changes
}
addEventListener('resize',drawCharts);addEventListener('mouseup',()=>{if(S.drag){S.drag=null;drawCharts()}});
loadForm().catch(err=>msg(err.message,'error'));
poll();
})();
