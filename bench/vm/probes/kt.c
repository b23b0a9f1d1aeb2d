// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
static long memfree(void){FILE*f=fopen("/proc/meminfo","r");char l[256];long v=0;while(fgets(l,256,f))if(sscanf(l,"MemFree: %ld",&v)==1)break;fclose(f);return v;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  size_t sz=(size_t)atol(argv[1])<<20; int mode=atoi(argv[2]); int thp=argc>3&&!strcmp(argv[3],"thp");
  for(int i=0;i<8;i++){
    int p[2]; pipe(p);
    pid_t c=fork();
    if(!c){ char*a=mmap(NULL,sz,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); madvise(a,sz,thp?MADV_HUGEPAGE:MADV_NOHUGEPAGE); mlock(a,sz); write(p[1],"x",1); pause(); _exit(0);}
    char x; read(p[0],&x,1); close(p[0]); close(p[1]);
    int pfd=syscall(SYS_pidfd_open,c,0);
    usleep(100000);
    double t0=now(); kill(c,SIGKILL); double t1=t0; int r=0;
    long m0=memfree(); if(mode==1){ r=syscall(448 /*process_mrelease*/,pfd,0); t1=now(); } long m1=memfree();
    int st; waitpid(c,&st,0); double t2=now();
    printf("freed-before-wait %ld MiB ",(m1-m0)>>10);printf("%s mode=%d kill->mrelease %.2f ms (r=%d) kill->reaped %.2f ms\n",thp?"thp":"4k",mode,(t1-t0)*1e3,r,(t2-t0)*1e3);
    close(pfd);
  }
  return 0;}
