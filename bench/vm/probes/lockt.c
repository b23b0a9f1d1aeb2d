// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  size_t sz=(size_t)atol(argv[1])<<20; const char*mode=argv[2];
  double t0=now();
  char*p=mmap(NULL,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE,-1,0);
  char*a=(char*)(((unsigned long)p+(2<<20)-1)&~((2UL<<20)-1));
  if(!strcmp(mode,"thp"))madvise(a,sz,MADV_HUGEPAGE);
  else if(!strcmp(mode,"4k"))madvise(a,sz,MADV_NOHUGEPAGE);
  int r;
  if(!strcmp(mode,"populate")){ r=madvise(a,sz,MADV_POPULATE_WRITE); r|=mlock(a,sz);} else r=mlock(a,sz);
  double t1=now();
  printf("%s %zu MiB: %.3f s (r=%d)\n",mode,sz>>20,t1-t0,r);
  if(argc>3){ double t2=now(); memset(a,1,sz); printf("memset %.3f s\n",now()-t2);}  
  return 0;}
