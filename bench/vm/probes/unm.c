// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  size_t sz=(size_t)atol(argv[1])<<20; int thp=!strcmp(argv[2],"thp");
  for(int i=0;i<5;i++){
  char*p=mmap(NULL,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE,-1,0);
  char*a=(char*)(((unsigned long)p+(2<<20)-1)&~((2UL<<20)-1));
  madvise(a,sz,thp?MADV_HUGEPAGE:MADV_NOHUGEPAGE);
  double t0=now(); mlock(a,sz); double t1=now(); munmap(p,sz+(2<<20)); double t2=now();
  printf("%s %zu MiB: lock %.1f ms (%.0f MiB/s) unmap %.1f ms\n",argv[2],sz>>20,(t1-t0)*1e3,(sz>>20)/(t1-t0),(t2-t1)*1e3);}
  return 0;}
